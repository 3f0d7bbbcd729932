"""Lets PyPI's CUDA-only torchvision import beside a CPU torch (installed as a .pth by install.sh).

torchvision's compiled ops cannot load against the CPU torch, and then
`torchvision._meta_registrations` fails with "operator torchvision::nms does not
exist", which breaks `import vllm`. Declaring the op schemas (no kernels) before
that module runs lets the pure-Python parts of torchvision work. Installed as a
.pth file so that vLLM's spawned worker processes get it too.
"""
import importlib.abc
import sys

_TARGET = "torchvision._meta_registrations"


def _define_schemas() -> None:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - real kernels are present: nothing to do
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in (
        "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
        "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
        "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
        "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
        "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
        "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    ):
        try:
            lib.define(schema)
        except RuntimeError:
            pass  # already defined
    _KEEP.append(lib)


_KEEP: list = []


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == _TARGET:
            sys.meta_path.remove(self)
            try:
                _define_schemas()
            except Exception:  # never break interpreter start-up
                pass
        return None


sys.meta_path.insert(0, _Finder())
