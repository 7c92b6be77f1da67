"""Training: task (embedder + miner + loss), loop (Accelerate), optimiser, checkpoints."""
