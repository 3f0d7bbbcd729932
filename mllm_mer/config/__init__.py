"""The one config tree: small sections, composed per verb. Each field is documented once (`sections`, `training`).

A verb's config (`EvaluateConfig`, `ServeConfig`, ...) is a dataclass whose fields are sections.
The command line (`mllm_mer.cli`), YAML files and `key=value` overrides are all generated from
these classes (`tree`).
"""
from mllm_mer.config.options import *  # noqa: F403
from mllm_mer.config.options import __all__ as _options
from mllm_mer.config.sections import *  # noqa: F403
from mllm_mer.config.sections import __all__ as _sections
from mllm_mer.config.training import *  # noqa: F403
from mllm_mer.config.training import __all__ as _training
from mllm_mer.config.tree import *  # noqa: F403
from mllm_mer.config.tree import __all__ as _tree
from mllm_mer.config.verbs import *  # noqa: F403
from mllm_mer.config.verbs import __all__ as _verbs

__all__ = [*_options, *_sections, *_training, *_tree, *_verbs]
