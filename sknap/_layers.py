"""Which modules of a backbone are recorded, and how its output becomes
class probabilities."""

import difflib

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "CALL_SEPARATOR",
    "OUTPUTS",
    "REDUCTIONS",
    "class_probabilities",
    "is_activation",
    "select",
]

REDUCTIONS = ("mean", "max", "active_fraction", "flatten")
OUTPUTS = ("logits", "proba", "log_proba")
CALL_SEPARATOR = "#"
_NAMES_HINT = "[name for name, _ in backbone.named_modules()] lists the names"


# Activation functions that layers=None records. "Active" is > 0 for all of
# them: for ReLU exactly the units that pass their input on; for GELU, SiLU
# and the like (small negative outputs), the units whose input is > 0.
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
)
# Activation modules of other libraries (Hugging Face's GELUActivation,
# timm's own GELU or Swish), recognised by the name of their class.
_ACTIVATION_NAMES = ("relu", "gelu", "silu", "swish", "mish")


def is_activation(module):
    """Whether ``layers=None`` records ``module``: an activation function."""
    if isinstance(module, ACTIVATIONS):
        return True
    name = type(module).__name__.lower()
    leaf = next(module.children(), None) is None
    return leaf and any(a in name for a in _ACTIVATION_NAMES)


def select(backbone, layers):
    """(modules, wanted): the modules to hook by name, and the (name, call)
    pairs to keep, or None to keep every call.

    ``layers`` is the extractor's parameter: None (every activation module,
    :func:`is_activation`), a
    module name (``"name#k"`` for the k-th call only), a module type, or a
    list of these.
    """
    named = dict(backbone.named_modules())
    named.pop("", None)
    if layers is None:
        chosen = [n for n, m in named.items() if is_activation(m)]
        if not chosen:
            raise ValueError(
                "layers=None selects every activation module (ReLU, GELU, SiLU, "
                "...), but the backbone has none (it may call functions such as "
                "torch.nn.functional.relu, which hooks cannot see). Choose layers "
                f"by name or type, for instance layers={list(named)[-2:]!r}; "
                f"{_NAMES_HINT}."
            )
        return {n: named[n] for n in chosen}, None
    if isinstance(layers, (str, type)):
        layers = [layers]
    modules, wanted = {}, set()
    any_call_filter = False
    for spec in layers:
        if isinstance(spec, type):
            matched = [n for n, m in named.items() if isinstance(m, spec)]
            if not matched:
                raise ValueError(
                    f"No module of type {spec.__name__} (given in 'layers') is in "
                    f"the backbone; {_NAMES_HINT} of its modules."
                )
            for n in matched:
                modules[n] = named[n]
                wanted.add((n, None))
            continue
        if not isinstance(spec, str):
            raise TypeError(
                "Each entry of 'layers' must be a module name (str) or a module "
                f"type. Got {spec!r} of type {type(spec).__name__}."
            )
        name, call = spec, None
        if CALL_SEPARATOR in spec:
            name, _, k = spec.rpartition(CALL_SEPARATOR)
            if not k.isdigit():
                raise ValueError(
                    f"Layer '{spec}' in 'layers': the part after "
                    f"'{CALL_SEPARATOR}' must be a call index such as "
                    f"'{name}{CALL_SEPARATOR}0'."
                )
            call, any_call_filter = int(k), True
        if name not in named:
            close = difflib.get_close_matches(name, list(named), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"Layer '{name}' given in 'layers' is not a module of the "
                f"backbone.{hint} {_NAMES_HINT}."
            )
        modules[name] = named[name]
        wanted.add((name, call))
    return modules, (wanted if any_call_filter else None)


def class_probabilities(output, kind="logits", key=None):
    """Float32 class probabilities of shape (n_samples, n_classes) from what
    the backbone returned: ``kind`` is the extractor's ``output`` parameter,
    ``key`` its ``output_key``."""
    if key is None and isinstance(output, dict) and "logits" in output:
        key = "logits"  # a Hugging Face model's output
    if isinstance(output, (tuple, list, dict)):
        if key is None:
            what = "dict" if isinstance(output, dict) else "tuple"
            keys = (
                list(output)
                if isinstance(output, dict)
                else list(getattr(output, "_fields", range(len(output))))
            )
            raise ValueError(
                f"The backbone returned a {what} ({keys}), not a tensor of class "
                "scores. Set output_key to the index or key of the scores, for "
                f"instance output_key={keys[0]!r}."
            )
        try:
            if isinstance(key, str) and not isinstance(output, dict):
                output = getattr(output, key)
            else:
                output = output[key]
        except (KeyError, IndexError, AttributeError) as err:
            raise ValueError(
                f"output_key={key!r} is not in the backbone's output of type "
                f"{type(output).__name__}."
            ) from err
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise ValueError(
            "The backbone must return class scores of shape (n_samples, "
            f"n_classes); it returned {type(output).__name__} of shape "
            f"{tuple(getattr(output, 'shape', ()))}."
        )
    output = output.detach().float()
    if kind == "logits":
        # Along rows: each row's result does not depend on its position in
        # the batch (the transpose's vector lanes rounded by position).
        return torch.softmax(output, dim=1)
    if kind == "log_proba":
        return output.exp()
    return output
