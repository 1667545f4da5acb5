"""Stage behaviour on tiny real models: mining filter, resumable stages, loss, the planted case."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from realrag.training import TrainConfig, run_pipeline
from realrag.training.data import load_dataset
from realrag.training.evaluate import arm_encoder
from realrag.training.mine import Mined, build_encoder, embed_corpus, encoder_key, run_mine
from realrag.training.sample import run_sample
from realrag.training.train import run_train

from .conftest import COLOURS, TINY_CLIP, make_objects, noisy_square


class Interrupt(Exception):
    pass


def interrupt_at(stage: str, count: int):
    def hook(name: str, done: int) -> None:
        if name == stage and done >= count:
            raise Interrupt(f"{stage} stopped at {done}")

    return hook


@pytest.fixture(scope="module")
def mined_setup(tiny_data, tiny_sd, tmp_path_factory):
    """Data, samples (tiny-sd, 2 per prompt) and mined negatives (3 per sample), computed once."""
    config = TrainConfig(
        data=tiny_data, generator="tiny-sd", encoder_model=TINY_CLIP, work_dir=tmp_path_factory.mktemp("work"),
        device="cpu", samples_per_prompt=2, negatives_per_sample=3, held_out_fraction=0.34,
        templates=["a photo of a {label}", "a {label}"], batch_size=2, epochs=3, lr=1e-3,
    )
    return run_pipeline(config, until="mine", generator=tiny_sd)


def test_reflective_negatives_never_share_the_prompts_object(mined_setup):
    ds, mined, corpus = mined_setup.dataset, mined_setup.mined, mined_setup.corpus_vectors
    encoder = build_encoder(mined_setup.config)
    for prompt in ds.prompts:
        negatives = mined.negatives[prompt.id]
        assert len(negatives) == 2 * 3  # samples per prompt x negatives per sample
        assert all(n["object_id"] != prompt.object_id for n in negatives)
        assert all(ds.image(n["image_id"]).object_id == n["object_id"] for n in negatives)
        # each sample's negatives are its nearest other-object images, best first
        for k, path in enumerate(mined_setup.samples.paths(prompt.id)):
            render = encoder.encode_images([Image.open(path)])[0]
            scores = corpus @ render
            others = [i for i in np.argsort(-scores) if ds.corpus[i].object_id != prompt.object_id][:3]
            assert [n["image_id"] for n in negatives if n["sample"] == k] == [ds.corpus[i].id for i in others]


def test_a_render_that_matches_its_object_does_not_become_a_negative(mined_setup, tiny_sd, tmp_path):
    """Plant the generator's own render in the corpus as a photo of the prompt's object: it is the
    render's nearest neighbour (cosine 1), and the filter must skip it."""
    config = mined_setup.config
    data = tmp_path / "data"
    shutil.copytree(config.data, data)
    prompt = next(p for p in mined_setup.dataset.prompts if p.object_id == "red_car")
    render = mined_setup.samples.paths(prompt.id)[0]
    shutil.copy(render, data / "red_car" / "render.png")
    config = config.model_copy(update={"data": data})
    ds = load_dataset(config)
    samples, _ = run_sample(config, ds, generator=tiny_sd)  # cached: same prompts, same generator
    encoder = build_encoder(config)
    corpus, _ = embed_corpus(config, ds, encoder)
    mined, _ = run_mine(config, ds, samples, encoder, corpus)
    first = [n for n in mined.negatives[prompt.id] if n["sample"] == 0]
    assert first[0]["skipped_same_object"] >= 1
    assert all(n["object_id"] != "red_car" for n in mined.negatives[prompt.id])
    assert mined.stats["render_nearest_is_own_object"] > 0


def test_sample_stage_interrupted_and_resumed_equals_an_uninterrupted_run(tiny_data, tiny_sd, base_config, tmp_path):
    straight = base_config(work_dir=tmp_path / "a", samples_per_prompt=2)
    resumed = base_config(work_dir=tmp_path / "b", samples_per_prompt=2)
    ds = load_dataset(straight)
    reference, _ = run_sample(straight, ds, generator=tiny_sd)
    with pytest.raises(Interrupt):
        run_sample(resumed, ds, generator=tiny_sd, hook=interrupt_at("sample", 4))
    samples, timing = run_sample(resumed, ds, generator=tiny_sd)
    assert timing.cached == 4 and timing.done == 2 * len(ds.prompts) - 4
    for prompt in ds.prompts:
        assert samples.files[prompt.id] == reference.files[prompt.id]  # same seeds and names
        for a, b in zip(samples.paths(prompt.id), reference.paths(prompt.id), strict=True):
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_train_stage_interrupted_and_resumed_equals_an_uninterrupted_run(mined_setup, tmp_path):
    setup = mined_setup
    key = encoder_key(build_encoder(setup.config))

    def train(work, hook=None):
        config = setup.config.model_copy(
            update={"work_dir": work, "checkpoint_every": 2, "grad_accum_steps": 2, "epochs": 3}
        )
        return run_train(config, setup.dataset, setup.mined, setup.corpus_vectors, "reflective", key, hook=hook)

    reference, _ = train(tmp_path / "a")
    with pytest.raises(Interrupt):
        train(tmp_path / "b", hook=interrupt_at("train", 3))  # step 3 is not a checkpoint
    resumed, timing = train(tmp_path / "b")
    assert timing.cached == 2  # resumed from the end of epoch 0
    assert resumed.summary["steps"] == reference.summary["steps"] == 6
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in reference.history]
    a, b = load_file(str(reference.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (resumed.run_dir / "state.pt").exists()
    # a finished run is a cache hit
    again, timing = train(tmp_path / "b")
    assert timing.done == 0 and again.history == resumed.history


def test_the_loss_decreases(mined_setup, tmp_path):
    setup = mined_setup
    config = setup.config.model_copy(update={"work_dir": tmp_path, "epochs": 8, "batch_size": 4})
    key = encoder_key(build_encoder(config))
    for arm in ("reflective", "inbatch"):
        run, _ = run_train(config, setup.dataset, setup.mined, setup.corpus_vectors, arm, key)
        by_epoch = [np.mean([h["loss"] for h in run.history if h["epoch"] == e]) for e in range(8)]
        assert by_epoch[-1] < 0.5 * by_epoch[0], (arm, by_epoch)


def test_planted_case_standard_ranks_the_reflective_negative_first_reflective_does_not(tmp_path):
    """Object red_car has one photo p. A held-out object "lookalike" holds tinted copies of p, which
    the standard run never sees. Among them we plant, as red_car's reflective negative, one that the
    standard retriever ranks above p; the reflective retriever must rank p above it."""
    data = make_objects(tmp_path / "data", colours={k: v for k, v in COLOURS.items() if k != "red_car"})
    rng = np.random.default_rng(1)
    (data / "red_car").mkdir()
    photo = noisy_square(COLOURS["red_car"], rng)
    photo.save(data / "red_car" / "0.png")
    (data / "lookalike").mkdir()
    pixels = np.asarray(photo).astype(float)
    for k in range(16):
        tinted = pixels + rng.normal(0, 60, (1, 1, 3)) + rng.normal(0, 30, pixels.shape)
        Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8)).save(data / "lookalike" / f"{k}.png")

    config = TrainConfig(
        data=data, generator="tiny-sd", encoder_model=TINY_CLIP, work_dir=tmp_path / "work", device="cpu",
        held_out_objects=["lookalike"], epochs=30, batch_size=8, lr=1e-3, temperature=0.01,
    )
    ds = load_dataset(config)
    encoder = build_encoder(config)
    corpus, _ = embed_corpus(config, ds, encoder)
    key = encoder_key(encoder)
    prompt = next(p for p in ds.prompts if p.object_id == "red_car")
    positive = ds.position(prompt.positives[0])
    lookalikes = [i for i, image in enumerate(ds.corpus) if image.object_id == "lookalike"]

    def scores(run):
        return corpus @ arm_encoder(config, run).encode_text([prompt.text])[0]

    standard, _ = run_train(config, ds, None, corpus, "inbatch", key)
    s = scores(standard)
    above = [i for i in lookalikes if s[i] > s[positive]]
    assert above, "planting needs a look-alike that the standard retriever prefers"
    planted = max(above, key=lambda i: s[i])

    mined = Mined("planted", {prompt.id: [{"image_id": ds.corpus[planted].id, "object_id": "lookalike", "score": 0.0}]}, {})
    reflective, _ = run_train(config, ds, mined, corpus, "reflective", key)
    r = scores(reflective)
    assert s[planted] > s[positive]  # standard: the negative first
    assert r[positive] > r[planted]  # reflective: the real photo first


def test_bf16_autocast_path_trains(mined_setup, tmp_path):
    """The mixed-precision code path (bf16 autocast; on GPU by default) also runs on CPU."""
    config = mined_setup.config.model_copy(update={"work_dir": tmp_path, "precision": "bf16", "epochs": 1})
    key = encoder_key(build_encoder(config))
    run, _ = run_train(config, mined_setup.dataset, mined_setup.mined, mined_setup.corpus_vectors, "reflective", key)
    assert run.summary["precision"] == "bf16"
    assert all(np.isfinite(h["loss"]) for h in run.history)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        run_train(config.model_copy(update={"precision": "fp16"}), mined_setup.dataset, mined_setup.mined,
                  mined_setup.corpus_vectors, "reflective", key)
