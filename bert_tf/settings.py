"""Typed job settings: one frozen dataclass per job is the single list of its settings.

Each field is a setting declared with `setting(default, help)`; its name is the command-line flag's
(google-research/bert's names where it had the flag). A field whose type is itself such a
dataclass (data creation's `InstanceOptions`) contributes its fields as flags of their own.
A job's dataclass may also extend another (the pretraining job's extends the training loop's
`TrainOptions`), so the loop takes the job's settings as they are. `define_flags` declares the
absl flags of a job from its dataclass, `from_flags` builds the dataclass from parsed flags,
`from_flat` from a {flag: value} dict, and `flat_dict` gives the settings as such a dict for the
records that runs keep (run_config.json, the data manifest).

A job's dataclass extends `Settings`, which validates an instance as it is made: each setting's
bounds (`minimum`, `maximum`, `above`, `below`, declared with the setting), then the class's own
`check()` for rules between settings; the error names every bad flag at once.
"""

import dataclasses
import math
import types
import typing


def setting(default=None, help="", choices=None, required=False, minimum=None, maximum=None,
            above=None, below=None):
    """A dataclass field that is also a command-line flag. A number may have bounds: `minimum`
    and `maximum` (inclusive), `above` and `below` (exclusive); None (unset) passes."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": tuple(choices) if choices else None, "required": required,
        "bounds": (minimum, maximum, above, below)})


def _bound_problem(name, value, bounds):
    """What is wrong with `value` for its bounds, or None."""
    minimum, maximum, above, below = bounds
    if value is None or isinstance(value, bool):
        return None
    low_ok = (minimum is None or value >= minimum) and (above is None or value > above)
    high_ok = (maximum is None or value <= maximum) and (below is None or value < below)
    if low_ok and high_ok:
        return None
    if above == 0 and maximum is None and below is None:
        return f"--{name} must be positive, got {value}"
    if maximum is None and below is None:
        return f"--{name} must be at least {minimum}, got {value}"
    if minimum is None and above is None:
        return f"--{name} must be at most {maximum}, got {value}"
    low = f"[{minimum}" if above is None else f"({above}"
    high = f"{maximum}]" if below is None else f"{below})"
    return f"--{name} must be in {low}, {high}, got {value}"


class Settings:
    """Base of a job's frozen settings dataclass: checks bounds and `check()` when made."""

    def __post_init__(self):
        problems = []
        for field in dataclasses.fields(self):
            value, choices = getattr(self, field.name), field.metadata.get("choices")
            if choices and value is not None and value not in choices:
                problems.append(f"--{field.name} must be one of {', '.join(map(str, choices))}, "
                                f"got {value!r}")
            elif problem := _bound_problem(field.name, value,
                                           field.metadata.get("bounds", (None,) * 4)):
                problems.append(problem)
        problems += self.check()
        if problems:
            raise ValueError("; ".join(problems))

    def check(self) -> list:
        """Problems among the settings (each a message naming its flags); none by default."""
        return []


def _flag_type(annotation):
    """str, int, float or bool from an annotation such as `int` or `str | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _is_repeated(kind) -> bool:
    return typing.get_origin(kind) in (tuple, list)


def _fields(config_class):
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        yield field, _flag_type(hints[field.name])


def define_flags(config_class, flag_values=None):
    """Declares an absl flag for every setting of `config_class` (and of nested settings)."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    for field, kind in _fields(config_class):
        if dataclasses.is_dataclass(kind):
            define_flags(kind, flag_values)
            continue
        meta = field.metadata
        default = field.default
        if meta.get("choices"):
            flags.DEFINE_enum(field.name, default, list(meta["choices"]), meta["help"],
                              flag_values=flag_values)
        elif _is_repeated(kind):  # a flag given once per value
            flags.DEFINE_multi_string(field.name, list(default) or None, meta["help"],
                                      flag_values=flag_values)
        else:
            define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
            define(field.name, default, meta["help"], flag_values=flag_values)
        if meta.get("required"):
            flags.mark_flag_as_required(field.name, flag_values=flag_values)


def flag_names(config_class) -> list:
    """The flags of `config_class`, nested settings flattened."""
    names = []
    for field, kind in _fields(config_class):
        names.extend(flag_names(kind) if dataclasses.is_dataclass(kind) else [field.name])
    return names


def from_flat(config_class, values):
    """An instance of `config_class` from {flag name: value}; settings not given keep their
    defaults, an unknown name is an error (its validation runs as it is built)."""
    unknown = set(values) - set(flag_names(config_class))
    if unknown:
        raise TypeError(f"{config_class.__name__} has no setting(s) {', '.join(sorted(unknown))}")
    return _build(config_class, values)


def _build(config_class, values):
    kwargs = {}
    for field, kind in _fields(config_class):
        if dataclasses.is_dataclass(kind):
            kwargs[field.name] = _build(kind, values)
        elif field.name in values:
            value = values[field.name]
            if kind is float and value is not None and not math.isfinite(value):
                raise ValueError(f"--{field.name} must be a finite number, got {value}")
            if _is_repeated(kind):
                value = tuple(value or ())
            kwargs[field.name] = value
    return config_class(**kwargs)


def from_flags(config_class, flag_values=None):
    """An instance of `config_class` from parsed absl flags."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    return from_flat(config_class, {name: flag_values[name].value
                                    for name in flag_names(config_class)})


def flat_dict(config) -> dict:
    """{flag name: value} of a settings instance, nested settings flattened."""
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(flat_dict(value))
        else:
            values[field.name] = value
    return values
