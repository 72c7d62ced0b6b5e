"""The CompressAI adapter: bitstreams through bytes on disk, weights files, the encoder/decoder split,
and the serial (mbt2018) versus parallel (checkerboard) decoder, counted."""

import functools
import struct
import subprocess
import sys

import pytest
import torch

from profiler.adapters.compressai import ARCHITECTURES, CompressAICodec, build, build_model
from profiler.counting import count_call
from profiler.errors import InputError
from profiler.submission import RatePoint, load_weights

from conftest import ROOT

pytest.importorskip("compressai")

BUNDLED = ["bmshj2018-hyperprior", "mbt2018", "cheng2020-anchor-checkerboard"]


def _rate(arch, quality=1, state_dict=None):
    return RatePoint(index=0, target_bpp=0.06, options={"arch": arch, "quality": quality}, state_dict=state_dict)


def _image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    # A smooth picture (a gradient plus mild noise) rather than white noise: a real coding case.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2])[None]
    return (base + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


_DECODE_IN_FRESH_PROCESS = """
import sys, torch
from pathlib import Path
from profiler.adapters.compressai import build
from profiler.submission import RatePoint
folder = Path(sys.argv[1])
for arch in sys.argv[2:]:
    codec = build(RatePoint(index=0, target_bpp=0.06, options={"arch": arch, "quality": 1}))
    torch.save(codec.decode((folder / f"{arch}.bin").read_bytes()), folder / f"{arch}.pt")
"""


def test_bitstreams_round_trip_through_files_into_another_process(tmp_path):
    """Each bundled architecture: encode here, write the bytes to a file, decode them in a fresh process
    with a freshly built codec, and get exactly the in-process reconstruction."""
    # 65×97: not a multiple of 64 in either direction, so padding and cropping back are exercised.
    x = _image(65, 97)
    in_process = {}
    for arch in BUNDLED:
        codec = build(_rate(arch))
        bits = codec.encode(x)
        in_process[arch] = codec.decode(bits)
        assert in_process[arch].shape == (1, 3, 65, 97)
        # Header: original H=65, W=97; padded to 128×128, the hyper-latent is 128/64 × 128/64 = 2×2.
        assert struct.unpack(">HHHH", bits[:8]) == (65, 97, 2, 2)
        (tmp_path / f"{arch}.bin").write_bytes(bits)

    proc = subprocess.run([sys.executable, "-c", _DECODE_IN_FRESH_PROCESS, str(tmp_path), *BUNDLED],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for arch in BUNDLED:
        assert torch.equal(torch.load(tmp_path / f"{arch}.pt"), in_process[arch]), arch


def test_truncated_bitstream_is_refused():
    codec = build(_rate("bmshj2018-hyperprior"))
    bits = codec.encode(_image(64, 64))
    with pytest.raises(ValueError, match="truncated|ends inside"):
        codec.decode(bits[:-3])


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "cheng2020-anchor-checkerboard"])
def test_weights_from_a_safetensors_file(arch, tmp_path):
    """A state dict saved from a differently seeded model loads through the suite's loader and gives
    exactly that model: same tensors, same bitstream, same reconstruction."""
    from safetensors.torch import save_file

    torch.manual_seed(1234)
    trained = ARCHITECTURES[arch].make(1, "mse")
    trained.update(force=True)
    path = tmp_path / "q1.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))

    state = load_weights(path)
    codec = build(RatePoint(index=0, target_bpp=0.06, weights=path, options={"arch": arch, "quality": 1},
                            state_dict=state))
    assert codec.weights_source == "trained weights from q1.safetensors"
    for name, p in trained.named_parameters():
        assert torch.equal(dict(codec.model.named_parameters())[name], p), name
    # The seeded random initialisation is a different model: the file really was used.
    random_init = build(_rate(arch))
    assert random_init.weights_source.startswith("random initialisation")
    assert not torch.equal(random_init.model.g_s[0].weight if hasattr(random_init.model.g_s[0], "weight")
                           else random_init.model.g_s[0].conv1.weight,
                           codec.model.g_s[0].weight if hasattr(codec.model.g_s[0], "weight") else codec.model.g_s[0].conv1.weight)

    x = _image(64, 128)
    reference = CompressAICodec(trained, ARCHITECTURES[arch], torch.device("cpu"), "reference")
    bits = codec.encode(x)
    assert bits == reference.encode(x)
    assert torch.equal(codec.decode(bits), reference.decode(bits))


def test_checkerboard_decoder_holds_everything_but_the_analysis_transforms():
    """Cheng 2020 anchor at quality 1 (N=128). Its h_a sits inside the latent codec: the split must
    still leave it (and g_a) out of the decoder. Parameters counted by hand (weights + biases):
      conv3x3(N,N) = 9·128·128 + 128 = 147,584;  GDN(N) = 128 + 128² = 16,512;  conv1x1(N,N) = 16,512
      h_a = 5 conv3x3(N,N)                                              =   737,920
      g_a = RBWithStride(3,N): 9·3·128+128 + 147,584 + 16,512 + 3·128+128 =   168,192
            + 3 ResidualBlock(N,N) (2 conv3x3 each)                     =   885,504
            + 2 RBWithStride(N,N): 2·(2·147,584 + 16,512 + 16,512)      =   656,384
            + conv3x3(N,N, stride 2)                                    =   147,584
                                                                        = 1,857,664
    """
    codec = build(_rate("cheng2020-anchor-checkerboard"))
    total = sum(p.numel() for p in codec.model.parameters())
    decoder = {id(p): p.numel() for p in codec.decoder.parameters()}
    assert sum(decoder.values()) == total - 1_857_664 - 737_920
    h_a = codec.model.latent_codec["hyper"].h_a
    assert not any(id(p) in decoder for p in h_a.parameters())
    assert not any(id(p) in decoder for p in codec.model.g_a.parameters())
    encoder = {id(p) for p in codec.encoder.parameters()}
    assert not any(id(p) in encoder for p in codec.model.g_s.parameters())
    # The hyper decoder and the context model belong to both sides.
    for shared in (codec.model.latent_codec["hyper"].h_s, codec.model.latent_codec["y"].context_prediction):
        assert all(id(p) in decoder and id(p) in encoder for p in shared.parameters())


@functools.lru_cache(maxsize=None)
def _decode_counts(arch, h, w):
    codec = build(_rate(arch))
    bits = codec.encode(_image(h, w))
    _, counted = count_call(lambda: codec.decode(bits), roots={"decoder": codec.decoder}, root_name="decoder")
    return counted


def test_mbt2018_decoder_is_serial_checkerboard_parallel():
    """Convolution calls in decode, counted by hand.

    mbt2018 (serial): h_s 3 + g_s 4 deconvolutions + 3 inverse GDNs (a functional conv each) = 10, plus
    per latent position one context conv and the 3 1×1 convs of the entropy-parameter network (4).
    64×64 → latent 4×4 = 16 positions: 10 + 64 = 74; 128×128 → 8×8 = 64: 10 + 256 = 266.
    Checkerboard (parallel): h_s 5 convs; two passes of (context conv + 3 entropy-parameter convs) = 8;
    g_s: 4 residual blocks × 2 + 3 upsampling blocks × (subpel conv, conv, inverse GDN, subpel skip) +
    the final subpel conv = 21: 34 at any size.
    """
    assert _decode_counts("mbt2018", 64, 64).ops["aten::convolution"]["calls"] == 74
    assert _decode_counts("mbt2018", 128, 128).ops["aten::convolution"]["calls"] == 266
    assert _decode_counts("cheng2020-anchor-checkerboard", 64, 64).ops["aten::convolution"]["calls"] == 34
    assert _decode_counts("cheng2020-anchor-checkerboard", 128, 128).ops["aten::convolution"]["calls"] == 34


def test_mbt2018_decoder_macs_at_128():
    """Every multiply-accumulate of mbt2018's real decode at 128×128 (quality 1: N = M = 192), by hand;
    transposed convolutions over their input positions. complexity-facts.md §3 gives 107.93 kMAC/px.
      h_s: deconv 192→192 k5 on 2×2: 4·25·192·192 = 3,686,400; deconv 192→288 on 4×4: 16·25·192·288 =
           22,118,400; conv 288→384 k3 on 8×8: 64·9·288·384 = 63,700,992                 →    89,505,792
      loop, 64 positions × (context 25·192·384 = 1,843,200 + 1×1 convs 768·640 + 640·512 + 512·384 =
           1,015,808)                                                                    →   182,976,512
      g_s: deconvs on 8², 16², 32², 64² input positions: 64·25·192² + 256·25·192² + 1024·25·192² +
           4096·25·192·3 = 1,297,612,800; inverse GDNs at 16², 32², 64²: (256+1024+4096)·192² =
           198,180,864                                                                   → 1,495,793,664
                                                                                   total   1,768,275,968
    """
    counted = _decode_counts("mbt2018", 128, 128)
    assert counted.complete
    assert counted.macs == 1_768_275_968
    assert round(counted.macs / (128 * 128) / 1000, 2) == 107.93


def test_unknown_architecture_and_quality_name_the_option():
    with pytest.raises(InputError, match=r"rates\[0\]\.options\.arch: unknown CompressAI architecture 'mbt2019'"):
        build(_rate("mbt2019"))
    with pytest.raises(InputError, match=r"rates\[0\]\.options\.quality: cheng2020-anchor-checkerboard has qualities 1–6"):
        build(_rate("cheng2020-anchor-checkerboard", quality=7))
    with pytest.raises(InputError, match=r"options\.metric"):
        build_model("mbt2018", 1, metric="psnr")
