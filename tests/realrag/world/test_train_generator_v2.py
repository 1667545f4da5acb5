"""world-sd v2 training on the test condition: invented names never reuse catalogue words, InfoNCE
masks other photos of the same object, the trainer warm-starts from v1 and writes a v2 directory,
and the go/no-go measures what it promises (on the tiny world, with a tiny evaluator)."""

import json
import random

import torch

from generator_service.tiny.world import build_pipeline as build_tiny_v1
from generator_service.world_sd import load_pipeline
from generator_service.world_sd_v2 import WorldSDv2Config, WorldSDv2Pipeline, build_components
from realrag.world.catalog import GENERIC_PROMPT
from realrag.world.train_generator_v2 import (
    InventedNames,
    catalogue_words,
    info_nce,
    invented_words,
    seen_brand_words,
    train_world_generator_v2,
    warm_start,
)


def tiny_v2_config() -> WorldSDv2Config:
    return WorldSDv2Config(block_out_channels=(16, 32), attention_heads=2, norm_num_groups=8, ref_width=8, ref_embed_dim=16,
                           ref_tokens=4, text_vocab=512, text_width=16, text_layers=1, text_heads=2, resampler_heads=2, id_dim=8)


def test_invented_names_never_use_catalogue_words_except_seen_brands(tiny_world):
    words = invented_words(tiny_world, 300)
    assert len(set(words)) == 300 and not {w.lower() for w in words} & catalogue_words(tiny_world)
    names = InventedNames(tiny_world, random.Random(0), p_seen_brand=0.5)
    brands = set(seen_brand_words(tiny_world))
    unseen_only = {w.lower() for c in tiny_world.unseen for w in c.name.split()} - \
                  {w.lower() for c in tiny_world.seen for w in c.name.split()}
    drawn = [names() for _ in range(200)]
    assert any(n.split()[0] in brands for n in drawn) and any(n.split()[0] not in brands for n in drawn)
    assert not {w.lower() for n in drawn for w in n.split()} & unseen_only


def test_info_nce_masks_other_photos_of_the_same_object():
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    perfect = info_nce(a, a, ["x", "y", "z", "w"], temperature=0.01)
    assert perfect < 1e-3
    # rows 0 and 1 are the same object: their cross terms may not count as negatives
    b = a.clone()
    b[1] = a[0]
    masked = info_nce(a, b, ["x", "x", "z", "w"], temperature=0.01)
    assert masked < info_nce(a, b, ["x", "y", "z", "w"], temperature=0.01)


def test_trains_from_a_v1_warm_start_and_saves_v2(tiny_world, tmp_path):
    v1 = build_tiny_v1().save(tmp_path / "v1")
    out = tmp_path / "v2"
    stats = train_world_generator_v2(tiny_world, out, init=v1, steps=2, batch_size=6, identity_steps=1, identity_batch=8,
                                     threads=1, cfg=tiny_v2_config(), log=lambda *_: None)
    assert stats["steps"] == 2
    card = json.loads((out / "config.json").read_text())
    assert card["version"] == 2 and card["training"]["init"] == "v1"  # outside the working directory: its name, no absolute path
    assert not set(card["training"]["seen_classes"]) & {c.slug for c in tiny_world.unseen}
    pipe = load_pipeline(out)
    assert isinstance(pipe, WorldSDv2Pipeline)
    x = pipe(GENERIC_PROMPT, seeds=[0, 1], references=[], steps=2)
    assert x.shape == (2, 3, 32, 32)


def test_warm_start_widens_v1_input_conv_with_zero_reference_channels(tmp_path):
    v1 = build_tiny_v1()
    cfg = WorldSDv2Config(**{**v1.cfg.__dict__, "ref_tokens": 4, "resampler_heads": 2, "id_dim": 8})
    modules = build_components(cfg)
    warm_start(v1.save(tmp_path / "v1"), cfg, modules, log=lambda *_: None)
    w_v1, w_v2 = load_pipeline(tmp_path / "v1").unet.conv_in.weight, modules[0].conv_in.weight
    assert w_v2.shape[1] == 3 + cfg.reference_channels
    assert torch.equal(w_v2[:, :3], w_v1) and not w_v2[:, 3:].any()  # the photo channels start silent


def test_go_no_go_measures_every_unseen_object_and_the_gates(tiny_world, tmp_path):
    from realrag.world.go_no_go import conditions, evaluate_model, table, verdict
    from realrag.world.train_evaluator import WorldEvaluator, train_world_evaluator

    rows = conditions(tiny_world, [0, 1], wrong=True)
    assert len(rows["unseen name+ref"]) == 2 * len(tiny_world.unseen) == len(rows["unseen name+wrong ref"])
    assert len(rows["seen name+ref"]) == 2 * len(tiny_world.seen)
    assert all(r[1] is None for r in rows["unseen name"]) and all(r[0] == GENERIC_PROMPT for r in rows["unseen generic+ref"])
    assert all(r[4] != r[3] for r in rows["unseen name+wrong ref"])

    path = tmp_path / "evaluator.safetensors"
    train_world_evaluator(tiny_world, path, steps=1, batch_size=8, threads=1, log=lambda *_: None)
    metrics, images = evaluate_model(build_tiny_v1(), tiny_world, WorldEvaluator.load(path), [0], steps=1, guidance=3.0,
                                     ref_guidance=None, wrong=True, log=lambda *_: None)
    assert 0 <= metrics["1-NN same object (corpus)"] <= 1 and "unseen wrong ref copied" in metrics
    assert len(images["unseen name+ref"]) == len(tiny_world.unseen)
    gates = verdict(metrics, metrics)
    assert gates["seen name+ref >= v1"] and set(gates) >= {"generic+ref >= 0.4", "1-NN same object >= 0.85"}
    assert "| unseen name+ref |" in table({"v1": metrics})
