"""A synthetic world of fine-grained, invented objects where "unseen by the generator" is literal.

``renderer`` draws and photographs objects, ``catalog`` names them and splits seen from unseen,
``dataset`` writes/reads a world on disk, and the ``train_*`` modules train the world's models
(base CLIP, evaluator, ``world-sd`` generator) into ``assets/``.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().with_name("assets")
CLIP_CONFIG = ASSETS_DIR / "world-clip.json"
CLIP_WEIGHTS = ASSETS_DIR / "world-clip.safetensors"
GENERATOR_DIR = ASSETS_DIR / "world-sd"
EVALUATOR_WEIGHTS = ASSETS_DIR / "world-evaluator.safetensors"
