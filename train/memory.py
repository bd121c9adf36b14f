"""Following memory on the meta device: what a training step would hold on a GPU, without one.

Two modes work together while ``imprint train --dry-run`` runs one training step on the meta device:

- :class:`LiveBytes` (a ``TorchDispatchMode``) follows every tensor an op creates, by storage, from its
  creation until it is freed, and keeps the running total, its peak and named marks. It sees the
  forward, the backward (the autograd engine runs under the same modes) and the optimizer step.
- :class:`GpuKernels` (a ``TorchFunctionMode``) makes the meta device allocate what a GPU would:
  autocast's casts under fp16/bf16 mixed precision (the ops on autocast's lower-precision and
  float32 lists; meta tensors have no autocast of their own), and fused attention: the memory-efficient
  kernel keeps q, k, v, the output and the log-sum-exp for backward, where the math fallback that the
  meta device would otherwise take keeps the whole score matrix.

Parameters made before the modes start are not followed: the caller counts them.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

# torch's CUDA autocast op lists (torch.amp docs: "ops that can autocast to float16" / "to float32"), by the
# name of the Python-level function or Tensor method that reaches them.
LOWER_PRECISION_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_tbc",
    "linear", "matmul", "__matmul__", "__rmatmul__", "mm", "mv", "bmm", "baddbmm", "addmm", "addmv", "addr",
    "addbmm", "chain_matmul", "multi_dot", "prelu", "scaled_dot_product_attention",
})
FLOAT32_OPS = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "__pow__", "__rpow__", "softplus", "layer_norm", "group_norm", "norm", "cosine_similarity",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "nll_loss", "cross_entropy", "cdist", "dist",
    "pdist", "renorm", "logsumexp", "softmax", "log_softmax", "cumprod", "cumsum", "prod", "sum",
    "binary_cross_entropy_with_logits",
})
MIXED_PRECISION_DTYPES: dict[str, torch.dtype | None] = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class LiveBytes(TorchDispatchMode):
    """Bytes of the meta-device storages that ops created and that are still alive; the peak; named marks.

    ``exclude``: tensors counted elsewhere (the parameters), whose storages are never followed, also when an
    in-place op (the optimizer's update) returns them.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._excluded = {t.untyped_storage()._cdata for t in exclude}
        self.live = 0
        self.peak = 0
        self.marks: dict[str, int] = {}
        self._refs: dict[int, int] = {}  # storage -> live tensors that use it
        self._size: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                self._follow(t)
        return out

    def _follow(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self._excluded:
            return
        if key not in self._refs:
            self._refs[key] = 0
            self._size[key] = storage.nbytes()
            self.live += self._size[key]
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        weakref.finalize(t, self._release, key).atexit = False

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= self._size.pop(key)

    def mark(self, name: str) -> int:
        """Remember the live bytes now under ``name``."""
        self.marks[name] = self.live
        return self.live

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """The peak reached inside the block goes to ``marks[name + "_peak"]``."""
        outer, self.peak = self.peak, self.live
        try:
            yield
        finally:
            self.marks[f"{name}_peak"] = self.peak
            self.peak = max(outer, self.peak)


class GpuKernels(TorchFunctionMode):
    """What a GPU allocates differently from the meta device: autocast casts (while ``autocast`` is a
    dtype) and fused attention (always)."""

    def __init__(self) -> None:
        super().__init__()
        self.autocast: torch.dtype | None = None

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.autocast is not None:
            if name in LOWER_PRECISION_OPS:
                args, kwargs = _cast(args, self.autocast), _cast(kwargs, self.autocast)
            elif name in FLOAT32_OPS:
                args, kwargs = _cast(args, torch.float32), _cast(kwargs, torch.float32)
        if name == "scaled_dot_product_attention":
            return fused_attention(*args, **kwargs)
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def autocasting(self, dtype: torch.dtype | None) -> Iterator[None]:
        outer, self.autocast = self.autocast, dtype
        try:
            yield
        finally:
            self.autocast = outer

    def autocast_forward(self, module: torch.nn.Module, dtype: torch.dtype | None) -> list[Any]:
        """Autocast ``module``'s forward, as accelerate does for a prepared model; returns the hook handles."""
        state: list[torch.dtype | None] = []

        def enter(_m: torch.nn.Module, _args: Any) -> None:
            state.append(self.autocast)
            self.autocast = dtype

        def leave(_m: torch.nn.Module, _args: Any, _out: Any) -> None:
            self.autocast = state.pop()

        return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]

    def checkpoint_function(self) -> Callable[..., Any]:
        """diffusers' own gradient-checkpointing function (non-reentrant ``torch.utils.checkpoint``), with the
        recompute in backward under the autocast state of the forward, as torch does for real autocast."""

        def run(module: torch.nn.Module, *args: Any) -> Any:
            dtype = self.autocast
            return torch.utils.checkpoint.checkpoint(
                module.__call__, *args, use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), self.recomputing(dtype)))

        return run

    @contextlib.contextmanager
    def recomputing(self, dtype: torch.dtype | None) -> Iterator[None]:
        """This mode (the autograd engine does not carry function modes into backward) with ``dtype``."""
        with contextlib.ExitStack() as stack:
            if self not in torch.overrides._get_current_function_mode_stack():
                stack.enter_context(self)
            stack.enter_context(self.autocasting(dtype))
            yield


def _cast(tree: Any, dtype: torch.dtype) -> Any:
    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
            return x.to(dtype)
        return x

    return tree_map(cast, tree)


def fused_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                    scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` as the memory-efficient kernel runs it (what it saves for backward)."""
    if query.dim() != 4 or enable_gqa:
        return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                              enable_gqa=enable_gqa)
    bias = attn_mask
    if bias is not None and bias.dtype == torch.bool:
        bias = torch.zeros(bias.shape, dtype=query.dtype, device=query.device).masked_fill(~bias, float("-inf"))
    if bias is not None:
        bias = bias.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    out: torch.Tensor = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, grad, dropout_p, is_causal, scale=scale)[0]
    return out
