"""The samples and the negatives mined from them are keyed on the generator's weights, not its name."""

from __future__ import annotations

import copy

import torch

from realrag.training.data import load_dataset
from realrag.training.mine import build_encoder, embed_corpus, run_mine
from realrag.training.sample import generator_digest, load_generator, run_sample


def _perturbed(generator):
    changed = copy.deepcopy(generator)
    with torch.no_grad():
        next(changed.pipe.unet.parameters()).add_(1e-3)  # one weight, slightly: a retrained generator
    return changed


def test_digest_follows_the_weights_not_the_object(tiny_sd):
    assert generator_digest(tiny_sd) == generator_digest(load_generator("tiny-sd", "cpu"))  # same weights, reloaded
    assert generator_digest(_perturbed(tiny_sd)) != generator_digest(tiny_sd)


def test_changed_weights_never_reuse_stale_samples_or_mining(tiny_sd, base_config):
    config = base_config(samples_per_prompt=1, sample_steps=2)
    ds = load_dataset(config)
    encoder = build_encoder(config)
    corpus, _ = embed_corpus(config, ds, encoder)
    samples, _ = run_sample(config, ds, generator=tiny_sd)
    mined, timing = run_mine(config, ds, samples, encoder, corpus)
    assert timing.cached == 0

    again, timing = run_sample(config, ds, generator=tiny_sd)  # same weights: a cache hit
    assert again.fingerprint == samples.fingerprint and timing.done == 0
    assert run_mine(config, ds, again, encoder, corpus)[0].fingerprint == mined.fingerprint

    changed = _perturbed(tiny_sd)
    fresh, timing = run_sample(config, ds, generator=changed)
    assert fresh.weights != samples.weights and fresh.fingerprint != samples.fingerprint
    assert timing.cached == 0 and timing.done == len(ds.prompts)  # redrawn, not reused
    remined, timing = run_mine(config, ds, fresh, encoder, corpus)
    assert remined.fingerprint != mined.fingerprint and timing.cached == 0

    # without a generator object the model key is loaded and hashed: the registry's tiny-sd weights
    by_key, timing = run_sample(config, ds)
    assert by_key.fingerprint == samples.fingerprint and timing.done == 0
