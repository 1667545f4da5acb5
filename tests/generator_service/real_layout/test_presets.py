"""Every packaged real preset, unchanged, loads offline from tiny copies of its real repos, in its real
dtype, and generates with 0, 1 and the maximum number of references; the worker's path (``run_job``:
artefact store, adapter-embedding cache, loader) gives the image the generator gives directly.

The repos are ``repos.py``'s copies in an HF hub cache (``conftest.py``); the presets are loaded by
key from the packaged ``services/models.toml`` through the worker's loader, as a worker would.
"""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from generator_service.families import family_module
from generator_service.families.base import GenerationInputs
from generator_service.families.common import DTYPES, match_dtype
from generator_service.loader import get_generator
from generator_service.runner import run_job
from services.artifacts import artifact_store
from services.jobs import JobStore
from services.registry import get_spec
from services.schemas import GenerateTask, GenerationRequest, Job, JobStatus
from services.settings import Settings
from tests.conftest import TEST_REDIS

pytestmark = pytest.mark.real_layout

PRESETS = ["sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "flux-dev-redux", "omnigen-v1"]
REDIS_URL = f"redis://{TEST_REDIS}/14"  # a database of its own; every key a test makes is deleted
JOB_PREFIX = f"real-layout-{uuid.uuid4().hex[:8]}-"
SIZE, STEPS, SEED = 64, 2, 11


def reference_image(index: int, size: int = 48) -> Image.Image:
    rng = np.random.RandomState(2000 + index)
    return Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8"))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def reference_counts(key: str) -> list[int]:
    return sorted({0, min(1, get_spec(key).max_references), get_spec(key).max_references})


def inputs(key: str, references: int, **overrides) -> GenerationInputs:
    spec = get_spec(key)
    args = dict(
        prompt="a photo of a red fox in the snow",
        seeds=[SEED],
        steps=STEPS,
        guidance=spec.default_guidance,
        width=SIZE,
        height=SIZE,
        references=[reference_image(i) for i in range(references)],
        reference_labels=[f"object {i}" for i in range(references)],
        ip_scale=spec.default_ip_scale,
    )
    return GenerationInputs(**{**args, **overrides})


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("worker"), redis_url=REDIS_URL, device="cpu", artifact_store="local", models_file=None)


@pytest.fixture(scope="module")
def jobs(settings):
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    yield store
    for key in store.redis.scan_iter(f"realrag:*:{JOB_PREFIX}*"):
        store.redis.delete(key)
    store.redis.close()


def floating_tensors_not_in(module: torch.nn.Module, dtype: torch.dtype) -> list[str]:
    """Parameters and persistent buffers (what a checkpoint holds) in another floating dtype."""
    return sorted(
        f"{name}:{tensor.dtype}"
        for name, tensor in module.state_dict().items()
        if tensor.is_floating_point() and tensor.dtype != dtype
    )


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", PRESETS)
def test_preset_loads_offline_in_its_dtype(key, settings):
    generator, _ = get_generator(key, settings)  # the worker's loader, the packaged spec
    spec = get_spec(key)
    dtype = DTYPES[spec.dtype]
    pipe = generator.pipe
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    assert spec.dtype in ("float16", "bfloat16")
    assert floating_tensors_not_in(denoiser, dtype) == []  # adapter layers included: no fp32 leftovers
    encoders = [pipe.image_encoder] if getattr(pipe, "image_encoder", None) is not None else []
    redux = getattr(generator, "redux", None)
    if redux is not None:
        encoders += [redux.image_encoder, redux.image_embedder]
    for encoder in encoders:
        assert floating_tensors_not_in(encoder, dtype) == []
    assert generator.max_references == spec.max_references
    has_encoder = spec.max_references > 0 and spec.family != "omnigen"
    assert (generator.image_encoder_id is not None) == has_encoder
    if has_encoder:
        assert encoders, f"{key}: references need an image encoder"


@pytest.mark.parametrize(("key", "count"), [(key, count) for key in PRESETS for count in reference_counts(key)])
def test_preset_generates_with_references(key, count, settings):
    generator, _ = get_generator(key, settings)
    images = generator.generate(inputs(key, count))
    assert len(images) == 1 and images[0].size == (SIZE, SIZE)
    # NaN or inf anywhere in the run decodes to a flat black image
    assert pixels(images[0]).std() > 1.0
    if count:
        plain = generator.generate(inputs(key, 0))[0]
        assert not np.array_equal(pixels(plain), pixels(images[0])), "the references changed nothing"


@pytest.mark.parametrize("key", PRESETS)
def test_worker_cached_embeddings_give_the_direct_image(key, settings, jobs):
    """``run_job`` loads the references from the artefact store, takes their adapter embeddings from
    the embedding cache (computing and storing them the first time) and passes them with the images;
    a cold and a warm cache both give the image of ``generate(references=...)``."""
    spec = get_spec(key)
    count = spec.max_references
    store = artifact_store(settings)
    uris = []
    for index in range(count):
        buffer = io.BytesIO()
        reference_image(index).save(buffer, format="PNG")
        uris.append(store.put(f"corpus/{key}/{index}.png", buffer.getvalue()))
    generator, _ = get_generator(key, settings)
    direct = generator.generate(inputs(key, count, seeds=[SEED, SEED + 1]))

    embeds_root = settings.artifact_root / "embeds"
    cached_before = len(list(embeds_root.rglob("*.safetensors"))) if embeds_root.exists() else 0
    for attempt in ("cold", "warm"):
        job_id = f"{JOB_PREFIX}{key}-{attempt}"
        task = GenerateTask(
            job_id=job_id,
            model=key,
            prompt="a photo of a red fox in the snow",
            reference_uris=uris,
            reference_labels=[f"object {i}" for i in range(count)],
            seeds=[SEED, SEED + 1],
            steps=STEPS,
            guidance=spec.default_guidance,
            width=SIZE,
            height=SIZE,
            ip_scale=spec.default_ip_scale,
        )
        request = GenerationRequest(prompt=task.prompt)
        assert jobs.create(Job(id=job_id, model=key, prompt=task.prompt, request=request, request_hash="h", seeds=task.seeds))
        assert run_job(task, jobs, settings) is JobStatus.succeeded, jobs.get(job_id).error
        outputs = jobs.get(job_id).outputs
        for output, expected in zip(outputs, direct, strict=True):
            stored = Image.open(io.BytesIO(store.get(output.uri)))
            assert np.array_equal(pixels(stored), pixels(expected)), f"{attempt} cache: worker image differs"
        cached = len(list(embeds_root.rglob("*.safetensors"))) if embeds_root.exists() else 0
        # one cache entry per reference for adapter families (none for OmniGen, which has no encoder)
        assert cached - cached_before == (count if generator.image_encoder_id else 0)


@pytest.mark.parametrize("key", PRESETS)
def test_offload_setting_loads_and_matches_on_the_cpu(key, settings):
    """With ``offload`` set ("model" and "sequential" load alike), weights load into host RAM (no
    ``device_map``); on the CPU there is nothing to offload to, so the image equals the preset's
    without offload. The hooks themselves need a GPU: ``test_offload_on_the_gpu``."""
    spec = get_spec(key).model_copy(update={"offload": "model"})
    offloaded = family_module(spec).load(spec, "cpu")
    generator, _ = get_generator(key, settings)
    count = spec.max_references
    expected = generator.generate(inputs(key, count))[0]
    assert np.array_equal(pixels(offloaded.generate(inputs(key, count))[0]), pixels(expected))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload hooks move weights between host RAM and a GPU")
@pytest.mark.parametrize("key", PRESETS)
@pytest.mark.parametrize("offload", ["none", "model", "sequential"])
def test_offload_on_the_gpu(key, offload):
    spec = get_spec(key).model_copy(update={"offload": offload})
    generator = family_module(spec).load(spec, "cuda")
    image = generator.generate(inputs(key, spec.max_references))[0]
    assert image.size == (SIZE, SIZE) and pixels(image).std() > 1.0


@pytest.mark.parametrize(
    ("key", "left_in_fp32"), [("sd35-large", "image_proj."), ("flux-dev", "encoder_hid_proj."), ("omnigen-v1", "pos_embed")]
)
def test_match_dtype_casts_what_the_plain_loader_leaves_in_fp32(key, left_in_fp32):
    """diffusers' loaders without their low-memory path (``low_cpu_mem_usage=False``, what they fall
    back to when accelerate is missing) build the SD3 IP-Adapter, the Flux image projection and
    OmniGen's ``pos_embed`` in fp32 beside bf16 weights; ``match_dtype`` brings them to the preset dtype."""
    from diffusers import FluxPipeline, OmniGenPipeline, StableDiffusion3Pipeline
    from transformers import SiglipImageProcessor, SiglipVisionModel

    from generator_service.families.flux import FluxGenerator
    from generator_service.families.omnigen import OmniGenGenerator
    from generator_service.families.stable_diffusion_3 import StableDiffusion3Generator

    spec = get_spec(key)
    dtype = DTYPES[spec.dtype]
    plain = {"low_cpu_mem_usage": False}
    if spec.family == "sd3":
        encoder = SiglipVisionModel.from_pretrained(spec.image_encoder, dtype=dtype)
        processor = SiglipImageProcessor.from_pretrained(spec.image_encoder)
        pipe = StableDiffusion3Pipeline.from_pretrained(
            spec.source, dtype=dtype, image_encoder=encoder, feature_extractor=processor, **plain
        )
        pipe.load_ip_adapter(spec.adapter, weight_name=spec.adapter_weight_name, image_encoder_folder=None, **plain)
        generator = StableDiffusion3Generator(spec, pipe, "cpu")
    elif spec.family == "flux":
        pipe = FluxPipeline.from_pretrained(spec.source, dtype=dtype, **plain)
        pipe.load_ip_adapter(
            spec.adapter, weight_name=spec.adapter_weight_name, image_encoder_pretrained_model_name_or_path=spec.image_encoder,
            image_encoder_dtype=dtype, **plain,
        )
        generator = FluxGenerator(spec, pipe, None, "cpu")
    else:
        pipe = OmniGenPipeline.from_pretrained(spec.source, dtype=dtype, **plain)
        generator = OmniGenGenerator(spec, pipe, "cpu")
    assert any(left_in_fp32 in name for name in floating_tensors_not_in(pipe.transformer, dtype))
    match_dtype(pipe, dtype)
    assert floating_tensors_not_in(pipe.transformer, dtype) == []
    image = generator.generate(inputs(key, spec.max_references))[0]
    assert pixels(image).std() > 1.0
