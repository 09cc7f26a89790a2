"""The LAM interface and its registry: a new method is one module and one line.

A latent action model here is a class derived from :class:`LAM`, registered under a name:

    from lam_models.lams.base import LAM, register_lam

    @register_lam("mine")
    class MyLAM(LAM):
        Config = MyConfig                       # a dataclass: the method's hyper-parameters
        def build(self) -> torch.nn.Module: ... # M copies of the networks (see lam_models.nn)
        def fit(self, data, progress): ...      # the training loop over data.sample(...)
        def encode(self, o, o_far): ...         # z of (M, N, *obs) tensors -> (M, N, d_z)

after which ``python -m lam_models.train mine``, the pipeline (``--lam mine``), the study
scripts and the benchmark find it by name (:func:`get_lam`). A LAM object holds M copies
trained together as one batched model: copy m has its own configuration (methods may let
some fields differ, ``per_copy``), its own seed and its own data, and its numbers do not
depend on the copies it is trained with.

Everything else is shared: :meth:`LAM.train` opens the data and runs :meth:`LAM.fit` on the
device; :meth:`LAM.latents` maps numpy or torch observations to latents in chunks;
:meth:`LAM.metrics` scores each copy (by default the package's probes,
:func:`lam_models.evaluation.scoring.evaluate_latents`); :meth:`LAM.save` and
:func:`load_lam` write and read a run folder (``model.pt`` holds weights only, ``run.json``
the configuration).
:class:`~lam_models.lams.training.TrainingLog` keeps per-copy training curves on the device
between log points and stops a run whose losses or parameters stop being finite.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lam_envs.envs.family import method_fits
from lam_models.lams.training import (
    TrainingDiverged,
    TrainingLog,
    _one_line,
    check_finite_parameters,
    check_finite_state,
    compile_networks,
    load_state,
    load_weights,
    open_tensorboard,
)
from lam_models.runs import load_run, save_run
from lam_models.split import CopyBatches, DataSpec, DataSplit

__all__ = [
    "LAM",
    "TrainingDiverged",
    "TrainingLog",
    "config_from_dict",
    "get_lam",
    "lam_names",
    "load_lam",
    "register_lam",
    "registry",
    "resolve_device",
    "train_and_score",
]

#: Every registered method: name -> class. Built-in methods register when
#: :mod:`lam_models.lams` is imported (done by :func:`get_lam` and :func:`lam_names`).
registry: dict[str, type[LAM]] = {}


def register_lam(name: str, *, replace: bool = False) -> Callable[[type[LAM]], type[LAM]]:
    """Class decorator: register a :class:`LAM` subclass under ``name``.

    A name already taken is refused unless ``replace`` (so a typo cannot silently shadow a
    built-in method).
    """
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("_", "").replace("-", "").isalnum()
    ):
        raise ValueError(f"a LAM name must be letters, digits, '_' or '-', got {name!r}")

    def decorate(cls: type[LAM]) -> type[LAM]:
        if not (isinstance(cls, type) and issubclass(cls, LAM)):
            raise TypeError(f"register_lam({name!r}) decorates LAM subclasses, got {cls!r}")
        if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass")
        if name in registry and registry[name] is not cls and not replace:
            raise ValueError(
                f"a LAM named {name!r} is already registered ({registry[name].__qualname__}); "
                "pass replace=True to replace it"
            )
        cls.name = name
        registry[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    importlib.import_module("lam_models.lams")


def lam_names() -> list[str]:
    """The registered method names."""
    _load_builtins()
    return list(registry)


def get_lam(name: str) -> type[LAM]:
    """The class registered as ``name``; an unknown name is an error listing the known ones."""
    _load_builtins()
    if name not in registry:
        raise ValueError(f"unknown LAM {name!r}; registered: {', '.join(registry)}")
    return registry[name]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device of a ``--device`` value, refused (``ValueError``) unless this torch
    can run on it here: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or
    ``cuda:N`` (N below the number of CUDA devices), ``mps`` where Metal is available.
    ``cpu:7`` (torch takes any index for the CPU, and ignores it) and devices that hold
    no data (``meta``) or need other packages (``xla``) are refused too."""
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    allowed = "auto, cpu, cuda or cuda:N" + (", mps" if has_mps else "")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use {allowed}") from None
    if resolved.type == "cpu":
        if resolved.index not in (None, 0):
            raise ValueError(f"device {str(device)!r}: the CPU has no index; use cpu")
        return torch.device("cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        return resolved
    if resolved.type == "mps" and has_mps and resolved.index in (None, 0):
        return torch.device("mps")
    if resolved.type == "mps":
        raise ValueError(f"device {str(device)!r} asked for, but MPS is not available here")
    raise ValueError(f"device {str(device)!r} is not one this package runs on; use {allowed}")


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """A config dataclass from its ``dataclasses.asdict`` (JSON turns tuples into lists)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for key, value in values.items():
        if isinstance(value, list) and "tuple" in str(hints.get(key, "")):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


class LAM(abc.ABC):
    """M copies of a latent action model, trained together.

    Subclasses set ``Config`` (a dataclass of the method's hyper-parameters), implement
    :meth:`build`, :meth:`fit` and :meth:`encode`, and may override :meth:`metrics`,
    :meth:`format_metrics` and the class attributes below.

    Attributes:
        name: the registry name (set by :func:`register_lam`).
        kinds: the environment families whose data the method handles ("grid", "linear");
            a family that declares its data like one of them (``EnvFamily.data_like``)
            fits too (:meth:`fits`).
        per_copy: Config fields that may differ between copies trained together.
        lookahead: the IDM sees (o_t, o_{t+lookahead}) when relabelling and scoring.
        configs: one Config per copy.  seeds: one seed per copy (initialisation, batches,
        augmentation).  spec: the data's :class:`DataSpec`.  device: where it lives.
        module: the batched networks (:meth:`build`).  history: per copy, training curves
        ``{"step": [...], "<loss>": [...], ...}`` filled by :meth:`fit`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    kinds: ClassVar[tuple[str, ...]] = ("grid", "linear")
    per_copy: ClassVar[tuple[str, ...]] = ()
    #: Frames of each observation the networks read, stacked on the channel axis (laom's
    #: ``frame_stack``); every reader of latents gives them so (:meth:`part_latents`).
    frame_stack: ClassVar[int] = 1
    #: A dataclass of options for training on fresh streamed transitions instead of a dataset
    #: (None: datasets only); :meth:`open_stream` turns it into a data source.
    stream_config: ClassVar[type | None] = None
    #: Settings the pipeline and the studies start from (fields of Config; e.g. fewer steps
    #: than a standalone run). Overridden by what the user gives.
    pipeline_defaults: ClassVar[dict[str, Any]] = {}
    #: Smaller sizes for the report card's CPU suites (fields of the method's ``Config``):
    #: ``"all"`` on every setting, ``"image"`` on top of them on image frames (None: not run
    #: on images).
    cpu_sizes: ClassVar[dict[str, dict[str, Any] | None]] = {}

    @classmethod
    def cpu_options(cls, image: bool) -> dict[str, Any] | None:
        """Its :attr:`cpu_sizes` on a setting: ``"all"``, with ``"image"`` on top where the
        frames are images (``image``); None where the sizes leave images out."""
        options = dict(cls.cpu_sizes.get("all") or {})
        if image:
            if "image" in cls.cpu_sizes and cls.cpu_sizes["image"] is None:
                return None
            options.update(cls.cpu_sizes.get("image") or {})
        return options

    def __init__(
        self,
        configs: Any | Sequence[Any],
        spec: DataSpec,
        seeds: Sequence[int],
        device: str | torch.device = "auto",
    ):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must hold at least one seed, got none")
        configs = list(configs) if isinstance(configs, list | tuple) else [configs] * len(seeds)
        if len(configs) != len(seeds):
            raise ValueError(f"give one config per seed: {len(configs)} for {len(seeds)} seeds")
        for c in configs:
            if not isinstance(c, self.Config):
                raise TypeError(f"{self.name} takes {self.Config.__name__}, got {type(c).__name__}")
        first = dataclasses.asdict(configs[0])
        for c in configs[1:]:
            differ = [
                k
                for k, v in dataclasses.asdict(c).items()
                if v != first[k] and k not in self.per_copy
            ]
            if differ:
                allowed = ", ".join(self.per_copy) or "nothing"
                raise ValueError(
                    f"copies of {self.name!r} trained together may differ only in {allowed}; "
                    f"they differ in {', '.join(differ)}"
                )
        if not self.fits(spec.kind):
            raise ValueError(
                f"the {self.name!r} LAM works on {' and '.join(self.kinds)} data, "
                f"not on {spec.kind} data"
            )
        self.configs, self.spec, self.seeds = configs, spec, seeds
        self.device = resolve_device(device)
        self.history: list[dict[str, list[float]]] = [{} for _ in seeds]
        self.tensorboard = None  # a SummaryWriter while training, when asked for
        self.module = self.build().to(self.device)

    @classmethod
    def fits(cls, kind: str) -> bool:
        """Whether the method takes data of the environment family ``kind``, asked of the
        family registry (:func:`lam_envs.envs.family.method_fits`)."""
        return method_fits(cls.kinds, kind)

    # ------------------------------------------------------------------ to implement

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """The untrained networks of the M copies (copy m initialised from ``seeds[m]``)."""

    @abc.abstractmethod
    def fit(self, data: Any, progress: bool = False) -> None:
        """Train on ``data`` (a :class:`~lam_models.split.CopyBatches`, or any object with its
        ``sample``/``sample_labelled`` methods); fill ``history`` (use :class:`TrainingLog`)."""

    @abc.abstractmethod
    def encode(self, o: torch.Tensor, o_far: torch.Tensor) -> torch.Tensor:
        """Latents of (M, N, *obs_shape) float tensors on the device -> (M, N, d_z)."""

    # ------------------------------------------------------------------ shared

    @property
    def config(self) -> Any:
        """Copy 0's configuration (all copies share it except ``per_copy`` fields)."""
        return self.configs[0]

    @property
    def num_copies(self) -> int:
        return len(self.seeds)

    @property
    def lookahead(self) -> int:
        return 1

    @classmethod
    def train(
        cls,
        configs: Any | Sequence[Any],
        data: Sequence[DataSplit] | Any,
        seeds: Sequence[int],
        device: str | torch.device = "auto",
        progress: bool = False,
        tensorboard: str | Path | None = None,
        compile: str | None = None,
    ) -> LAM:
        """Build M = len(seeds) copies and train them together; copy m on ``data[m]``.

        ``data``: one :class:`DataSplit` per copy (batches come from their train parts and
        labelled subsets), or an object with the :class:`CopyBatches` interface.
        ``tensorboard``: a folder where the training curves are also logged for TensorBoard
        (``pip install 'lam-envs[tensorboard]'``). ``compile``: a ``torch.compile`` mode
        (:data:`~lam_models.lams.training.COMPILE_MODES`) for the networks, on CUDA only
        (:func:`~lam_models.lams.training.compile_networks`); None trains eagerly.
        """
        seeds = list(seeds)
        if isinstance(data, Sequence):
            if len(data) != len(seeds):
                raise ValueError(f"give one data source per seed: {len(data)} for {len(seeds)}")
            batches = cls.batches(list(data), seeds, resolve_device(device))
        else:
            batches = data
        lam = cls(configs, batches.spec, seeds, device)
        if compile is not None:
            compile_networks(lam.module, lam.device, compile)
        lam.tensorboard = open_tensorboard(tensorboard) if tensorboard is not None else None
        lam.module.train()
        try:
            lam.fit(batches, progress)
        finally:
            if lam.tensorboard is not None:
                lam.tensorboard.close()
                lam.tensorboard = None
        lam.module.eval()
        check_finite_parameters(lam.module, lam.name)
        return lam

    @classmethod
    def open_stream(
        cls, stream: Any, seed: int, label_fraction: float | None, eval_transitions: int
    ) -> Any:
        """A data source of fresh transitions (methods with a ``stream_config``)."""
        raise ValueError(f"the {cls.name!r} LAM trains on datasets only; give --dataset")

    @classmethod
    def batches(cls, data: list[Any], seeds: list[int], device: torch.device) -> Any:
        """The training batches of M copies' data sources (default: :class:`DataSplit` s)."""
        if not all(isinstance(d, DataSplit) for d in data):
            raise TypeError(f"{cls.name} trains on DataSplit objects, got {type(data[0]).__name__}")
        return CopyBatches(data, seeds, device)

    def part_latents(self, part: Any) -> np.ndarray:
        """z(o_t, o_{t+lookahead}) of every transition of a split's part
        (:class:`~lam_models.split.Part`), each observation with its ``frame_stack`` frames:
        (M, N, d_z), one set per copy."""
        h = self.frame_stack
        return self.latents(part.obs(history=h), part.far_obs(self.lookahead, history=h))

    @torch.no_grad()
    def latents(
        self, o: np.ndarray | torch.Tensor, o_far: np.ndarray | torch.Tensor, chunk: int = 8192
    ) -> np.ndarray:
        """z of transitions (o, o_far): (N, *obs_shape) shared by every copy, or
        (M, N, *obs_shape) one set per copy -> (M, N, d_z) float32 numpy. No augmentation."""
        o, o_far = torch.as_tensor(o), torch.as_tensor(o_far)
        ndim = len(self.spec.obs_shape)
        if o.shape != o_far.shape or tuple(o.shape[-ndim:]) != self.spec.obs_shape:
            raise ValueError(
                f"o and o_far must have shape (N, {self.spec.obs_shape}) or (M, N, ...), got "
                f"{tuple(o.shape)} and {tuple(o_far.shape)}"
            )
        if o.ndim == ndim + 1:
            o, o_far = o.expand(self.num_copies, *o.shape), o_far.expand(self.num_copies, *o.shape)
        if o.shape[0] != self.num_copies:
            raise ValueError(f"o has {o.shape[0]} copies, the model {self.num_copies}")
        self.module.eval()
        parts = []
        for i in range(0, o.shape[1], chunk):
            a = o[:, i : i + chunk].to(self.device, torch.float32)
            b = o_far[:, i : i + chunk].to(self.device, torch.float32)
            parts.append(self.encode(a, b).float().cpu())
        if not parts:
            return np.zeros((self.num_copies, 0, 0), np.float32)
        return torch.cat(parts, dim=1).numpy()

    def metrics(self, splits: Sequence[DataSplit]) -> list[dict[str, Any]]:
        """Each copy's metrics on its split's held-out transitions: by default the package's
        probes of the latent (:func:`lam_models.evaluation.scoring.evaluate_latents`)."""
        from lam_models.evaluation.scoring import score_lam

        return score_lam(self, splits)

    @classmethod
    def format_metrics(cls, metrics: dict[str, Any]) -> str:
        """The metrics of one copy as readable lines (methods override for their own)."""
        from lam_models.evaluation.scoring import format_scores

        return format_scores(metrics)

    def check_batch(self, batch: Any, batch_size: int) -> None:
        """Check a batch from the data source once (the first), so a wrong source fails with
        a readable message rather than deep inside a matrix product."""
        m, obs = self.num_copies, self.spec.obs_shape
        for name in ("obs", "next_obs", "far_obs"):
            x = getattr(batch, name)
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
                raise ValueError(f"the data gave {name} that is not a float32 tensor: {x!r:.60}")
            if tuple(x.shape) != (m, batch_size, *obs):
                raise ValueError(
                    f"the data gave {name} of shape {tuple(x.shape)}; expected "
                    f"{(m, batch_size, *obs)} (copies, batch_size, *obs_shape)"
                )
        if tuple(batch.label_mask.shape) != (m, batch_size) or batch.label_mask.dtype != torch.bool:
            raise ValueError(
                f"the data gave label_mask of shape {tuple(batch.label_mask.shape)} and dtype "
                f"{batch.label_mask.dtype}; expected bool {(m, batch_size)}"
            )

    def plots(self, folder: Path, splits: Sequence[DataSplit]) -> list[Path]:
        """Method-specific pictures of copy 0 written into ``folder`` (default: none)."""
        return []

    def copy(self, index: Sequence[int]) -> LAM:
        """A new LAM of the copies ``index`` (weights copied), in that order."""
        index = list(index)
        other = type(self)(
            [self.configs[i] for i in index], self.spec, [self.seeds[i] for i in index], self.device
        )
        other.module.load_state_dict(_select_copies(self.module, index))
        other.history = [self.history[i] for i in index]
        return other

    def save(self, folder: str | Path, metrics: Any = None, **extra: Any) -> Path:
        """Write ``model.pt`` (weights only) and ``run.json`` into ``folder``."""
        return save_run(
            folder,
            self.name,
            self.module,
            [dataclasses.asdict(c) for c in self.configs],
            metrics if metrics is not None else {},
            seeds=self.seeds,
            device=str(self.device),
            spec=dataclasses.asdict(self.spec),
            history=self.history,
            **extra,
        )


def train_and_score(
    method: str,
    configs: Any | Sequence[Any],
    splits: Sequence[DataSplit],
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
    plots: str | Path | None = None,
) -> tuple[LAM, list[dict[str, Any]]]:
    """Train the copies of ``method`` on their splits and score each: a plain function of
    picklable arguments, for worker processes (splits travel as their arguments).
    ``plots``: a folder to write the method's pictures of copy 0 into (:meth:`LAM.plots`),
    while the splits are at hand."""
    lam = get_lam(method).train(configs, list(splits), list(seeds), device)
    metrics = lam.metrics(list(splits))
    if plots is not None:
        Path(plots).mkdir(parents=True, exist_ok=True)
        lam.plots(Path(plots), list(splits))
    return lam, metrics


def _select_copies(module: nn.Module, index: list[int]) -> dict[str, torch.Tensor]:
    """The state dict of ``module`` restricted to the copies ``index`` (leading axis M)."""
    return {k: v[index].clone() if v.ndim else v.clone() for k, v in module.state_dict().items()}


def load_lam(folder: str | Path, device: str | torch.device = "auto") -> LAM:
    """The LAM saved in a run folder by :meth:`LAM.save` (or ``python -m lam_models.train``).

    ``model.pt`` is read with ``weights_only=True``: a file holding pickled objects (which
    could run code) is refused. So is one that is truncated or corrupt, one holding another
    method's (or configuration's) weights, one with NaN or infinite weights, and a
    ``run.json`` whose model would be absurdly large (all with one ``ValueError`` line).
    """
    folder = Path(folder)
    record = load_run(folder)
    run_json = folder / "run.json"
    try:
        cls = get_lam(record["method"])
        configs = [config_from_dict(cls.Config, c) for c in record["config"]]
        spec = DataSpec(**record["spec"])
        seeds = record["seeds"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{run_json} is not a LAM run ({_one_line(error)})") from None
    try:
        lam = cls(configs, spec, seeds, device)
    except (RuntimeError, MemoryError, OverflowError) as error:  # sizes beyond this machine
        raise ValueError(
            f"{run_json} describes a {record['method']!r} model that cannot be built here "
            f"({_one_line(error)})"
        ) from None
    weights = load_weights(folder / "model.pt", lam.device)
    load_state(lam.module, weights, folder / "model.pt", f"a {record['method']!r} LAM")
    check_finite_state(weights, folder / "model.pt")
    lam.module.eval()
    lam.history = record.get("history") or lam.history
    return lam
