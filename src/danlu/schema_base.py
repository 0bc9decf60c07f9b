"""The base of every config section: strict (unknown keys are errors), checked on assignment,
and no NaN or infinity in any number."""

from pydantic import BaseModel, ConfigDict

# numpy's seed range (transformers' set_seed seeds numpy too): a seed outside it fails at train time
SEED_MAX = 2**32 - 1


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)
