"""Test helpers that WRITE small StyleGAN2 checkpoints in each official on-disk format.

Each writer takes a NVIDIA-named state (`random_state`) and applies the inverse of the documented
conversion (/work/shared/FORMATS.md sections 1-2), written independently of the readers in
`lowrankgan.models.stylegan2.formats`, so a round trip checks both against the spec.

The NVIDIA and TF writers build the real pickle structure: they register fake `torch_utils`,
`dnnlib` modules in `sys.modules` only while pickling (pickle needs to find the globals by name)
and remove them afterwards, so a reader cannot import them when loading.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import pickle
import shlex
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

_BUFFERS = {"w_avg", "resample_filter", "noise_const"}

# The official scripts call pickle.dump without a protocol: Python 3.6/3.7's default 3 for the
# TF pickles, 3.7+/3.8's default 4 for the PyTorch ones. (Protocol 5 would store numpy arrays
# through numpy's _frombuffer, which no official file references and the readers refuse.)
TF_PROTOCOL = 3
NVIDIA_PROTOCOL = 4


# ---------------------------------------------------------------------------------------------
# A random NVIDIA-named generator state


def nvidia_filter() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(f, f) / 64.0


def random_state(
    resolution: int = 16,
    channels: int = 32,
    w_dim: int = 32,
    z_dim: int = 32,
    mapping_layers: int = 2,
    c_dim: int = 0,
    channel_base: int = 256,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random `G_ema.state_dict()` of a small StyleGAN2, keys in NVIDIA's order.

    Channels follow NVIDIA's `min(channel_base / r, channels)`. Affine biases lie in [0.5, 1.9]
    (real ones sit near their init of 1); there `(b - 1) + 1 == b` exactly in float32, so the TF
    round trip can be compared bit for bit.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    def ch(r: int) -> int:
        return min(channel_base // r, channels)

    def affine_bias(n: int) -> torch.Tensor:
        return (1.0 + 0.25 * randn(n)).clamp(0.5, 1.9)

    state: dict[str, torch.Tensor] = {"mapping.w_avg": randn(w_dim)}
    if c_dim:
        state["mapping.embed.weight"] = randn(w_dim, c_dim)
        state["mapping.embed.bias"] = randn(w_dim)
    in_features = z_dim + (w_dim if c_dim else 0)
    for i in range(mapping_layers):
        state[f"mapping.fc{i}.weight"] = randn(w_dim, in_features if i == 0 else w_dim) * 100
        state[f"mapping.fc{i}.bias"] = randn(w_dim)

    def layer(prefix: str, c_in: int, c_out: int, r: int) -> None:
        state[f"{prefix}.weight"] = randn(c_out, c_in, 3, 3)
        state[f"{prefix}.noise_strength"] = randn(1)[0] * 0.1
        state[f"{prefix}.bias"] = randn(c_out)
        state[f"{prefix}.resample_filter"] = nvidia_filter()
        state[f"{prefix}.noise_const"] = randn(r, r)
        state[f"{prefix}.affine.weight"] = randn(c_in, w_dim)
        state[f"{prefix}.affine.bias"] = affine_bias(c_in)

    def torgb(prefix: str, c_in: int) -> None:
        state[f"{prefix}.weight"] = randn(3, c_in, 1, 1)
        state[f"{prefix}.bias"] = randn(3)
        state[f"{prefix}.affine.weight"] = randn(c_in, w_dim)
        state[f"{prefix}.affine.bias"] = affine_bias(c_in)

    r = 4
    while r <= resolution:
        block = f"synthesis.b{r}"
        if r == 4:
            state[f"{block}.const"] = randn(ch(4), 4, 4)
        state[f"{block}.resample_filter"] = nvidia_filter()
        if r > 4:
            layer(f"{block}.conv0", ch(r // 2), ch(r), r)
        layer(f"{block}.conv1", ch(r), ch(r), r)
        torgb(f"{block}.torgb", ch(r))
        r *= 2
    return state


def _resolutions(state: Mapping[str, torch.Tensor]) -> list[int]:
    res = {int(k.split(".")[1][1:]) for k in state if k.startswith("synthesis.b")}
    return sorted(res)


def _mapping_layers(state: Mapping[str, torch.Tensor]) -> int:
    return sum(1 for k in state if k.startswith("mapping.fc") and k.endswith(".weight"))


# ---------------------------------------------------------------------------------------------
# Fake NVIDIA / TF modules, present only while pickling


@contextlib.contextmanager
def _fake_modules(attrs: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """Put modules (with parents) holding `attrs` into sys.modules; remove what was added."""
    added: list[str] = []
    try:
        for dotted, members in attrs.items():
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in sys.modules:
                    sys.modules[name] = types.ModuleType(name)
                    added.append(name)
            for key, value in members.items():
                value.__module__ = dotted
                value.__qualname__ = key
                setattr(sys.modules[dotted], key, value)
        yield
    finally:
        for name in reversed(added):
            del sys.modules[name]


def _reconstruct_persistent_obj(meta: Any) -> Any:  # pragma: no cover - never called here
    raise RuntimeError("only a name for pickle to reference")


class EasyDict(dict):
    """Pickled under the name dnnlib.util.EasyDict."""


class _Persistent:
    """Pickles exactly as NVIDIA's persistent_class instances: _reconstruct_persistent_obj(meta)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_reconstruct_persistent_obj, (self.meta,))


DEFAULT_MODULE_SRC = '"""training/networks.py stand-in: the real file holds the class code."""\n'

_CLASS_NAMES = {
    "": "training.networks.Generator",
    "mapping": "training.networks.MappingNetwork",
    "synthesis": "training.networks.SynthesisNetwork",
}


def _class_name(path: str) -> str:
    if path in _CLASS_NAMES:
        return _CLASS_NAMES[path]
    last = path.split(".")[-1]
    if last.startswith("fc") or last in ("affine", "embed"):
        return "training.networks.FullyConnectedLayer"
    if last.startswith("b"):
        return "training.networks.SynthesisBlock"
    if last in ("conv0", "conv1"):
        return "training.networks.SynthesisLayer"
    if last == "torgb":
        return "training.networks.ToRGBLayer"
    return "training.networks_stylegan3.SynthesisInput"  # only in the StyleGAN3 refusal test


def _attributes(path: str, class_name: str, conv_clamp: float | None) -> dict[str, Any]:
    """Plain attributes the NVIDIA modules carry next to their tensors."""
    kind = class_name.rsplit(".", 1)[-1]
    if kind == "SynthesisLayer":
        return {
            "up": 2 if path.endswith("conv0") else 1,
            "use_noise": True,
            "activation": "lrelu",
            "conv_clamp": conv_clamp,
            "padding": 1,
            "act_gain": np.float64(math.sqrt(2)),
            "channels_last": False,
        }
    if kind == "ToRGBLayer":
        return {"conv_clamp": conv_clamp, "channels_last": False, "weight_gain": 0.1}
    if kind == "SynthesisBlock":
        return {"architecture": "skip", "use_fp16": np.bool_(False), "channels_last": False}
    if kind == "FullyConnectedLayer":
        lr = 0.01 if path.startswith("mapping") else 1.0
        return {"activation": "lrelu" if lr < 1 else "linear", "weight_gain": lr, "bias_gain": lr}
    return {}


def _module_state(
    path: str, own: Mapping[str, torch.Tensor], children: Mapping[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """An nn.Module __dict__ as NVIDIA pickles it."""
    params = collections.OrderedDict(
        (k, torch.nn.Parameter(v.clone(), requires_grad=False))
        for k, v in own.items()
        if k not in _BUFFERS
    )
    buffers = collections.OrderedDict((k, v.clone()) for k, v in own.items() if k in _BUFFERS)
    state: dict[str, Any] = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_pre_hooks": collections.OrderedDict(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(children),
        "_init_args": (),
        "_init_kwargs": EasyDict(),
    }
    state.update(extra)
    return state


def _build_tree(
    state: Mapping[str, torch.Tensor],
    path: str,
    conv_clamp: float | None,
    module_src: str,
    top_extra: dict[str, Any],
) -> _Persistent:
    """Nest the flat state into persistent objects (Generator -> mapping/synthesis -> ...)."""
    prefix = f"{path}." if path else ""
    own: dict[str, torch.Tensor] = {}
    child_names: list[str] = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if "." in rest:
            child = rest.split(".", 1)[0]
            if child not in child_names:
                child_names.append(child)
        else:
            own[rest] = value
    children = {
        name: _build_tree(state, prefix + name, conv_clamp, module_src, {}) for name in child_names
    }
    class_name = _class_name(path)
    extra = _attributes(path, class_name, conv_clamp)
    extra.update(top_extra)
    meta = {
        "type": "class",
        "version": 6,
        "module_src": module_src,
        "class_name": class_name,
        "state": _module_state(path, own, children, extra),
    }
    return _Persistent(meta)


def nvidia_init_kwargs(
    state: Mapping[str, torch.Tensor], conv_clamp: float | None, sg3_layout: bool
) -> EasyDict:
    """Generator `_init_kwargs` as the ADA repo (nested) or the SG3 repo (flattened) stores them."""
    w_dim = state["mapping.fc0.weight"].shape[0]
    embed = state.get("mapping.embed.weight")
    c_dim = 0 if embed is None else embed.shape[1]
    z_dim = state["mapping.fc0.weight"].shape[1] - (0 if embed is None else embed.shape[0])
    synthesis = EasyDict(
        channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=conv_clamp, architecture="skip"
    )
    kwargs = EasyDict(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=_resolutions(state)[-1],
        img_channels=3,
        mapping_kwargs=EasyDict(num_layers=_mapping_layers(state)),
    )
    if sg3_layout:
        kwargs.update(synthesis)
    else:
        kwargs["synthesis_kwargs"] = synthesis
    return kwargs


def write_nvidia_pkl(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    conv_clamp: float | None = 256,
    sg3_layout: bool = False,
    module_src: str = DEFAULT_MODULE_SRC,
    with_g_ema: bool = True,
) -> None:
    """A stylegan2-ada-pytorch (or stylegan3-repo, `sg3_layout`) network pickle."""
    init_kwargs = nvidia_init_kwargs(state, conv_clamp, sg3_layout)
    top = {
        "_init_kwargs": init_kwargs,
        "z_dim": init_kwargs["z_dim"],
        "w_dim": init_kwargs["w_dim"],
        "num_ws": 2 * int(math.log2(init_kwargs["img_resolution"])) - 2,
    }
    g_ema = _build_tree(state, "", conv_clamp, module_src, top)
    g = _build_tree(state, "", conv_clamp, module_src, top)
    d_state = _module_state("", {"b4.fc.weight": torch.randn(4, 4)}, {}, {})
    d = _Persistent(
        {
            "type": "class",
            "version": 6,
            "module_src": module_src,
            "class_name": "training.networks.Discriminator",
            "state": d_state,
        }
    )
    data: dict[str, Any] = {
        "G": g,
        "D": d,
        "augment_pipe": None,
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "x"},
    }
    if with_g_ema:
        data["G_ema"] = g_ema
    fakes = {
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib.util": {"EasyDict": EasyDict},
    }
    with _fake_modules(fakes), open(path, "wb") as f:
        pickle.dump(data, f, protocol=NVIDIA_PROTOCOL)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def write_payload_pkl(path: str | Path, marker: str | Path) -> None:
    """A NVIDIA-looking pickle whose G_ema weight would run `touch marker` via os.system."""
    state = _module_state("", {}, {}, {})
    state["_parameters"]["weight"] = _Payload(Path(marker))
    g_ema = _Persistent(
        {"type": "class", "version": 6, "module_src": "", "class_name": "G", "state": state}
    )
    fakes = {
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib.util": {"EasyDict": EasyDict},
    }
    with _fake_modules(fakes), open(path, "wb") as f:
        pickle.dump({"G": None, "D": None, "G_ema": g_ema}, f, protocol=NVIDIA_PROTOCOL)


# ---------------------------------------------------------------------------------------------
# Original TensorFlow pickles


class Network:
    """Pickled under the name dnnlib.tflib.network.Network, with the TF state dict as state."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def _tf_network(name: str, variables: list[tuple[str, np.ndarray]], **extra: Any) -> Network:
    state = {
        "version": 4,
        "name": name,
        "static_kwargs": extra.pop("static_kwargs", {}),
        "components": extra.pop("components", {}),
        "build_module_src": 'raise SystemExit("TF build code must never run")\n',
        "build_func_name": extra.pop("build_func_name", name),
        "variables": variables,
    }
    return Network(state)


def tf_variables(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, np.ndarray]]:
    """Gs's variables split by owner: {'Gs': ..., 'mapping': ..., 'synthesis': ...}."""

    def np_(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy().astype(np.float32).copy()

    mapping = {}
    for i in range(_mapping_layers(state)):
        mapping[f"Dense{i}/weight"] = np_(state[f"mapping.fc{i}.weight"].t())
        mapping[f"Dense{i}/bias"] = np_(state[f"mapping.fc{i}.bias"])

    synthesis: dict[str, np.ndarray] = {}

    def conv(src: str, dst: str, noise: int | None, flip: bool = False) -> None:
        weight = state[f"{dst}.weight"].permute(2, 3, 1, 0)  # [kh, kw, in, out]
        if flip:  # TF's Conv0_up kernel is the spatial flip of NVIDIA's
            weight = weight.flip(0, 1)
        synthesis[f"{src}/weight"] = np_(weight)
        synthesis[f"{src}/mod_weight"] = np_(state[f"{dst}.affine.weight"].t())
        synthesis[f"{src}/mod_bias"] = np_(state[f"{dst}.affine.bias"] - 1)
        if noise is not None:
            synthesis[f"{src}/noise_strength"] = np_(state[f"{dst}.noise_strength"])
            synthesis[f"noise{noise}"] = np_(state[f"{dst}.noise_const"][None, None])
        synthesis[f"{src}/bias"] = np_(state[f"{dst}.bias"])

    for r in _resolutions(state):
        block, src = f"synthesis.b{r}", f"{r}x{r}"
        log2 = int(math.log2(r))
        if r == 4:
            synthesis["4x4/Const/const"] = np_(state[f"{block}.const"][None])
            conv("4x4/Conv", f"{block}.conv1", 0)
        else:
            conv(f"{src}/Conv0_up", f"{block}.conv0", 2 * log2 - 5, flip=True)
            conv(f"{src}/Conv1", f"{block}.conv1", 2 * log2 - 4)
        conv(f"{src}/ToRGB", f"{block}.torgb", None)
    gs = {"dlatent_avg": np_(state["mapping.w_avg"])}
    return {"Gs": gs, "mapping": mapping, "synthesis": synthesis}


def write_tf_pkl(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    layout: str = "components",
    static_kwargs: dict[str, Any] | None = None,
) -> None:
    """An original TF StyleGAN2 pickle: (G, D, Gs) of dnnlib.tflib.network.Network.

    layout 'components': dlatent_avg on Gs, the rest on its mapping/synthesis components (as the
    official pickles are); 'flat': everything on Gs with 'mapping/' and 'synthesis/' prefixes.
    """
    owners = tf_variables(state)
    if static_kwargs is None:
        static_kwargs = {
            "num_channels": 3,
            "resolution": _resolutions(state)[-1],
            "label_size": 0,
            "fmap_base": 128,
        }

    def gs_like(name: str) -> Network:
        top = list(owners["Gs"].items())
        comp_vars: dict[str, list[tuple[str, np.ndarray]]] = {"mapping": [], "synthesis": []}
        for comp in ("mapping", "synthesis"):
            items = list(owners[comp].items())
            if layout == "flat":
                top += [(f"{comp}/{k}", v) for k, v in items]
            else:
                comp_vars[comp] = items
        components = {
            comp: _tf_network(f"G_{comp}", comp_vars[comp], build_func_name=f"G_{comp}_stylegan2")
            for comp in ("mapping", "synthesis")
        }
        return _tf_network(
            name,
            top,
            static_kwargs=dict(static_kwargs),
            components=components,
            build_func_name="G_main",
        )

    d = _tf_network("D", [("4x4/Dense0/weight", np.zeros((4, 4), np.float32))])
    fakes = {"dnnlib.tflib.network": {"Network": Network}}
    with _fake_modules(fakes), open(path, "wb") as f:
        pickle.dump((gs_like("G"), d, gs_like("Gs")), f, protocol=TF_PROTOCOL)


# ---------------------------------------------------------------------------------------------
# rosinality .pt


def rosinality_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality `Generator.state_dict()` keys/shapes for a NVIDIA-named state (FORMATS.md 2)."""
    out: dict[str, torch.Tensor] = {}
    blur = nvidia_filter() * 4  # rosinality's kernels are scaled by factor**2, so they sum to 4
    for i in range(_mapping_layers(state)):
        out[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"].clone()
        out[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"].clone()
    out["input.input"] = state["synthesis.b4.const"][None].clone()

    def styled(dst: str, src: str, up: bool) -> None:
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None].clone()
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"].clone()
        if up:
            out[f"{dst}.conv.blur.kernel"] = blur.clone()
        out[f"{dst}.noise.weight"] = state[f"{src}.noise_strength"].reshape(1).clone()
        out[f"{dst}.activate.bias"] = state[f"{src}.bias"].clone()

    def to_rgb(dst: str, src: str, up: bool) -> None:
        out[f"{dst}.bias"] = state[f"{src}.bias"].view(1, 3, 1, 1).clone()
        if up:
            out[f"{dst}.upsample.kernel"] = blur.clone()
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None].clone()
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"].clone()

    styled("conv1", "synthesis.b4.conv1", up=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", up=False)
    res = _resolutions(state)[1:]
    for k, r in enumerate(res):
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", up=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", up=False)
    for k, r in enumerate(res):
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb", up=True)
    out["noises.noise_0"] = state["synthesis.b4.conv1.noise_const"][None, None].clone()
    for k, r in enumerate(res):
        out[f"noises.noise_{2 * k + 1}"] = state[f"synthesis.b{r}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * k + 2}"] = state[f"synthesis.b{r}.conv1.noise_const"][None, None]
    return out


def write_rosinality_pt(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    with_latent_avg: bool = True,
    train_format: bool = False,
) -> None:
    """A rosinality checkpoint: convert_weight.py's {'g_ema', 'latent_avg'} or train.py's dict."""
    g_ema = rosinality_state(state)
    data: dict[str, Any]
    if train_format:
        optim = {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}]}
        args = argparse.Namespace(
            size=_resolutions(state)[-1],
            latent=state["mapping.fc0.weight"].shape[0],
            n_mlp=_mapping_layers(state),
            channel_multiplier=2,
            ckpt=None,
            lr=0.002,
            wandb=False,
        )
        data = {
            "g": {k: v.clone() for k, v in g_ema.items()},
            "d": {"convs.0.0.weight": torch.zeros(4, 3, 1, 1)},
            "g_ema": g_ema,
            "g_optim": optim,
            "d_optim": optim,
            "args": args,
            "ada_aug_p": 0.0,
        }
    else:
        data = {"g_ema": g_ema}
    if with_latent_avg:
        data["latent_avg"] = state["mapping.w_avg"].clone()
    torch.save(data, path)
