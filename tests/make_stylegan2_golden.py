"""Make the StyleGAN2 golden tensors in tests/data/stylegan2/ (what test_stylegan2.py checks).

Usage (from the repository root):

    .venv/bin/python tests/make_stylegan2_golden.py

This script deliberately does not import lowrankgan. It builds small random generators as
NVIDIA-named state dicts (FORMATS.md section 1, "SG2 G_ema names and shapes") and runs its own
reference forward pass written as literally as the equations of FORMATS.md section 1 ("SG2
forward equations") state them: one sample at a time, the weight modulated per sample
(W' = W * s) and demodulated explicitly, the upsampling conv as `F.conv_transpose2d` with in and
out swapped, `upsample2d` as explicit zero insertion, and the FIR filter as an explicit sum of
shifted copies built from the taps [1, 3, 3, 1]. Everything runs in float64 and is stored as
float32 (the state dicts are float32 first, so both sides see the same weights).

Each file `{name}.pt` holds: `state_dict`, `conv_clamp`, `z`, `c` (or None), `psi`, `cutoff`,
`ws` (after truncation), `img_const` and `img_none` (noise modes "const" and "none").
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent / "data" / "stylegan2"
LR_MAPPING = 0.01

NETS = [
    # name, resolution, channels, z_dim, w_dim, c_dim, img_channels, mapping layers,
    # conv_clamp, psi, cutoff, batch, seed
    dict(name="uncond16", res=16, ch={4: 32, 8: 24, 16: 16}, z=16, w=24, c=0, img=3,
         layers=2, clamp=None, psi=1.0, cutoff=None, batch=3, seed=1),
    dict(name="cond32_clamp256", res=32, ch={4: 40, 8: 32, 16: 24, 32: 16}, z=24, w=32, c=3,
         img=3, layers=3, clamp=256.0, psi=0.7, cutoff=4, batch=3, seed=2),
    # conv_clamp 0.5 is unrealistic on purpose: at 256 the clamp never bites in a small net.
    dict(name="gray8_clamp05", res=8, ch={4: 16, 8: 8}, z=8, w=8, c=0, img=1,
         layers=1, clamp=0.5, psi=0.5, cutoff=None, batch=2, seed=3),
]  # fmt: skip


def fir_1d_taps() -> list[float]:
    return [1.0, 3.0, 3.0, 1.0]


def fir_2d() -> torch.Tensor:
    """outer([1,3,3,1]) / 64: NVIDIA's stored `resample_filter` (sums to 1)."""
    t = torch.tensor(fir_1d_taps(), dtype=torch.float64)
    return torch.outer(t, t) / 64.0


def random_state_dict(spec: dict) -> dict[str, torch.Tensor]:
    """NVIDIA-named tensors with trained-like scales (mapping weights stored / lr mult)."""
    g = torch.Generator().manual_seed(spec["seed"])

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g)

    w_dim, ch = spec["w"], spec["ch"]
    sd: dict[str, torch.Tensor] = {}
    in_f = spec["z"] + (w_dim if spec["c"] else 0)
    for i in range(spec["layers"]):
        sd[f"mapping.fc{i}.weight"] = randn(w_dim, in_f if i == 0 else w_dim) / LR_MAPPING
        sd[f"mapping.fc{i}.bias"] = 0.1 * randn(w_dim) / LR_MAPPING
    if spec["c"]:
        sd["mapping.embed.weight"] = randn(w_dim, spec["c"])
        sd["mapping.embed.bias"] = 0.1 * randn(w_dim)
    sd["mapping.w_avg"] = 0.5 * randn(w_dim)

    def layer(prefix: str, cin: int, cout: int, r: int) -> None:
        sd[prefix + "weight"] = randn(cout, cin, 3, 3)
        sd[prefix + "bias"] = 0.1 * randn(cout)
        sd[prefix + "noise_strength"] = 0.05 + 0.25 * torch.rand((), generator=g)
        sd[prefix + "noise_const"] = randn(r, r)
        sd[prefix + "affine.weight"] = randn(cin, w_dim)
        sd[prefix + "affine.bias"] = 1.0 + 0.1 * randn(cin)
        sd[prefix + "resample_filter"] = fir_2d().float()

    def torgb(prefix: str, cin: int) -> None:
        sd[prefix + "weight"] = randn(spec["img"], cin, 1, 1)
        sd[prefix + "bias"] = 0.1 * randn(spec["img"])
        sd[prefix + "affine.weight"] = randn(cin, w_dim)
        sd[prefix + "affine.bias"] = 1.0 + 0.1 * randn(cin)

    sd["synthesis.b4.const"] = randn(ch[4], 4, 4)
    layer("synthesis.b4.conv1.", ch[4], ch[4], 4)
    torgb("synthesis.b4.torgb.", ch[4])
    sd["synthesis.b4.resample_filter"] = fir_2d().float()
    r = 8
    while r <= spec["res"]:
        layer(f"synthesis.b{r}.conv0.", ch[r // 2], ch[r], r)
        layer(f"synthesis.b{r}.conv1.", ch[r], ch[r], r)
        torgb(f"synthesis.b{r}.torgb.", ch[r])
        sd[f"synthesis.b{r}.resample_filter"] = fir_2d().float()
        r *= 2
    return sd


# ---------------------------------------------------------------------------------------------
# Reference forward pass, float64, one sample at a time.


def lrelu_gain(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2.0)


def ref_mapping(sd, spec, z, c) -> torch.Tensor:
    """z (B, z_dim), c (B, c_dim) | None -> ws (B, num_ws, w_dim), truncated."""
    num_ws = 2 * int(math.log2(spec["res"])) - 2
    out = []
    for n in range(z.shape[0]):
        x = z[n] / torch.sqrt((z[n] ** 2).mean() + 1e-8)
        if spec["c"]:
            we, be = sd["mapping.embed.weight"], sd["mapping.embed.bias"]
            y = c[n] @ (we / math.sqrt(spec["c"])).T + be
            y = y / torch.sqrt((y**2).mean() + 1e-8)
            x = torch.cat([x, y])
        for i in range(spec["layers"]):
            w, b = sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"]
            x = lrelu_gain(x @ (w * LR_MAPPING / math.sqrt(w.shape[1])).T + LR_MAPPING * b)
        ws = torch.stack([x] * num_ws)
        cutoff = num_ws if spec["cutoff"] is None else spec["cutoff"]
        for j in range(cutoff):
            ws[j] = sd["mapping.w_avg"] + spec["psi"] * (ws[j] - sd["mapping.w_avg"])
        out.append(ws)
    return torch.stack(out)


def fir(x: torch.Tensor, pad: int | tuple[int, int], gain: float) -> torch.Tensor:
    """x (C, H, W): zero pad, then y[i, j] = sum_ab gain f[a, b] x[i + a, j + b] per channel
    (correlation = convolution for this symmetric filter)."""
    p0, p1 = (pad, pad) if isinstance(pad, int) else pad
    x = F.pad(x, (p0, p1, p0, p1))
    f = fir_2d() * gain
    k = f.shape[0]
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    y = torch.zeros(x.shape[0], h, w, dtype=x.dtype)
    for a in range(k):
        for b in range(k):
            y = y + f[a, b] * x[:, a : a + h, b : b + w]
    return y


def ref_layer(sd, prefix, x, w, up, noise_mode, clamp, w_dim) -> torch.Tensor:
    """x (Cin, H, W), w (w_dim,) -> (Cout, H', W')."""
    s = w @ (sd[prefix + "affine.weight"] / math.sqrt(w_dim)).T + sd[prefix + "affine.bias"]
    wm = sd[prefix + "weight"] * s[None, :, None, None]  # W'_oi = W_oi s_i
    d = 1.0 / torch.sqrt((wm**2).sum(dim=(1, 2, 3)) + 1e-8)
    wd = wm * d[:, None, None, None]
    if up:
        y = F.conv_transpose2d(x[None], wd.transpose(0, 1), stride=2, padding=0)[0]
        assert y.shape[-1] == 2 * x.shape[-1] + 1
        y = fir(y, 1, gain=4.0)
    else:
        y = F.conv2d(x[None], wd, padding=1)[0]
    if noise_mode == "const":
        y = y + sd[prefix + "noise_const"] * sd[prefix + "noise_strength"]
    y = lrelu_gain(y + sd[prefix + "bias"][:, None, None])
    return y if clamp is None else y.clamp(-clamp, clamp)


def ref_torgb(sd, prefix, x, w, clamp, w_dim) -> torch.Tensor:
    cin = x.shape[0]
    s = w @ (sd[prefix + "affine.weight"] / math.sqrt(w_dim)).T + sd[prefix + "affine.bias"]
    s = s / math.sqrt(cin)
    wm = sd[prefix + "weight"][:, :, 0, 0] * s[None, :]
    y = torch.einsum("oi,ihw->ohw", wm, x) + sd[prefix + "bias"][:, None, None]
    return y if clamp is None else y.clamp(-clamp, clamp)


def ref_upsample2d(img: torch.Tensor) -> torch.Tensor:
    c, h, w = img.shape
    z = torch.zeros(c, 2 * h, 2 * w, dtype=img.dtype)
    z[:, ::2, ::2] = img
    return fir(z, (2, 1), gain=4.0)


def ref_synthesis(sd, spec, ws, noise_mode) -> torch.Tensor:
    clamp, w_dim = spec["clamp"], spec["w"]
    images = []
    for n in range(ws.shape[0]):
        x = sd["synthesis.b4.const"]
        x = ref_layer(sd, "synthesis.b4.conv1.", x, ws[n, 0], False, noise_mode, clamp, w_dim)
        img = ref_torgb(sd, "synthesis.b4.torgb.", x, ws[n, 1], clamp, w_dim)
        k = 3
        while 2**k <= spec["res"]:
            p = f"synthesis.b{2**k}."
            x = ref_layer(sd, p + "conv0.", x, ws[n, 2 * k - 5], True, noise_mode, clamp, w_dim)
            x = ref_layer(sd, p + "conv1.", x, ws[n, 2 * k - 4], False, noise_mode, clamp, w_dim)
            rgb = ref_torgb(sd, p + "torgb.", x, ws[n, 2 * k - 3], clamp, w_dim)
            img = ref_upsample2d(img) + rgb
            k += 1
        images.append(img)
    return torch.stack(images)


def make(spec: dict) -> dict:
    sd = random_state_dict(spec)
    sd64 = {k: v.double() for k, v in sd.items()}
    g = torch.Generator().manual_seed(100 + spec["seed"])
    z = torch.randn(spec["batch"], spec["z"], generator=g)
    c = None
    if spec["c"]:
        c = F.one_hot(torch.arange(spec["batch"]) % spec["c"], spec["c"]).float()
    ws = ref_mapping(sd64, spec, z.double(), None if c is None else c.double())
    return {
        "state_dict": sd,
        "conv_clamp": spec["clamp"],
        "z": z,
        "c": c,
        "psi": spec["psi"],
        "cutoff": spec["cutoff"],
        "ws": ws.float(),
        "img_const": ref_synthesis(sd64, spec, ws, "const").float(),
        "img_none": ref_synthesis(sd64, spec, ws, "none").float(),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for spec in NETS:
        data = make(spec)
        path = OUT / f"{spec['name']}.pt"
        torch.save(data, path)
        img = data["img_const"]
        print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB, img {tuple(img.shape)}, "
              f"std {img.std():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
