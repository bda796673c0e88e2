r"""Hyperparameter search for RecBole and plugin models: RecBole's ``HyperTuning`` (hyperopt) and Ray Tune.

Both read RecBole's params file format, one searched key per line (plugin keys included)::

    align choice ['con','gen']
    align_weight loguniform -6.9,-2.3
    learning_rate uniform 0.0005,0.005
    embedding_size quniform 32,128,32

(no comments: every line of three or more words is a key; ``loguniform`` bounds are natural logs,
here 0.001 and 0.1, as in hyperopt). Both write RecBole's result file (per trial: its parameters, valid result, test result) and
print the best parameters with their valid and test results. Trials are ranked by the valid
metric (``valid_metric``) only; the test result is reported, never used to choose.

- :func:`run_hyper`: RecBole's ``HyperTuning`` with :func:`recbole_llm.objective_function`,
  trials one after the other in this process. ``algo``: ``exhaustive`` (every combination of
  ``choice`` keys), ``random`` or ``bayes`` (TPE), ``max_evals`` trials.
- :func:`run_ray_tune`: the same search as Ray Tune trials on a local or existing Ray cluster,
  one CPU per trial by default. Every trial reports its valid score after each validation, so the
  ASHA scheduler stops unpromising trials early; ``bayes`` uses Ray's hyperopt searcher.
"""

import ast
import math
import os

from recbole.trainer.hyper_tuning import ExhaustiveSearchError, HyperTuning, _validate_space_exhaustive_search
from recbole.utils.utils import dict2str

from recbole_llm.config import Config
from recbole_llm.profiles.store import store_dir
from recbole_llm.quick_start import objective_function, run_trial

ALGOS = ("exhaustive", "random", "bayes")
RESULT_KEYS = ("model", "best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")
# Flags of run_recbole_llm.py that RecBole's Config also reads from the command line; not config keys.
CLI_FLAGS = {
    "config_files", "params_file", "tool", "algo", "max_evals", "early_stop", "output_file", "display_file",
    "ray_address", "cpus_per_trial", "gpus_per_trial", "checkpoint", "nproc", "ip", "port", "world_size", "group_offset",
}


class _Objective:
    r"""HyperTuning's objective with the search's model, dataset and fixed keys in every trial."""

    def __init__(self, fixed):
        self.fixed = fixed

    def __call__(self, params, config_file_list):
        return objective_function({**self.fixed, **params}, config_file_list)


def run_hyper(model=None, dataset=None, params_file=None, config_file_list=None, config_dict=None, algo="exhaustive",
              max_evals=100, early_stop=10, output_file="hyper.result", display_file=None):
    r"""Search ``params_file``'s space with RecBole's ``HyperTuning``; trials run one after the other.

    ``model`` and ``dataset`` may also come from ``config_file_list``, ``config_dict`` or the
    command line (as in RecBole's ``run_hyper.py``); so may every fixed key. ``max_evals`` is
    ignored by ``exhaustive``, which runs every combination.

    Returns:
        dict: ``best_params``, ``best_result`` (the objective's dict: best_valid_score,
        best_valid_result, test_result, ...) and ``results`` (params string -> result).
    """
    _check_algo(algo)
    config = _driver_config(model, dataset, config_file_list, config_dict)
    fixed = {**(config_dict or {}), "model": config["model"], "dataset": config["dataset"]}
    hp = HyperTuning(_Objective(fixed), params_file=params_file, fixed_config_file_list=config_file_list,
                     algo=algo, max_evals=max_evals, early_stop=early_stop, display_file=display_file)
    _check_not_on_command_line(hp.space, config)
    if algo == "exhaustive":  # RecBole has this check, but HyperTuning never calls it
        _validate_space_exhaustive_search(hp.space)
    hp.run()
    hp.export_result(output_file=output_file)
    best_result = hp.params2result[hp.params2str(hp.best_params)]
    _print_best(hp.best_params, best_result)
    return {"best_params": hp.best_params, "best_result": best_result, "results": hp.params2result}


def run_ray_tune(model=None, dataset=None, params_file=None, config_file_list=None, config_dict=None, algo="exhaustive",
                 max_evals=100, output_file="hyper.result", address=None, cpus_per_trial=1, gpus_per_trial=0,
                 scheduler=None, storage_path="ray_log", runtime_env=None):
    r"""Search ``params_file``'s space with Ray Tune; trials run in parallel, ``cpus_per_trial`` CPUs
    and ``gpus_per_trial`` GPUs each.

    Args:
        address (str, optional): an existing Ray cluster (``"auto"``, ``"ray://host:10001"``); ``None``
            starts a local one, unless this process already called ``ray.init``.
        algo (str): ``exhaustive`` (a grid over the ``choice`` keys), ``random`` or ``bayes``
            (hyperopt's TPE through ``ray.tune.search.hyperopt``); the last two run ``max_evals`` trials.
        scheduler (ray.tune.schedulers.TrialScheduler, optional): default ASHA on the valid metric
            (``valid_metric``), one rung per validation.
        runtime_env (dict, optional): for ``ray.init``, e.g. ``{"working_dir": "<recbole-llm checkout>"}``
            on a cluster whose nodes lack the package (datasets and profile store must be at the same
            absolute paths on every node).

    The command line's ``--key=value`` pairs reach the trials as fixed keys; relative dataset,
    profile store and config file paths are made absolute (Ray runs each trial in its own directory,
    where it also writes the trial's log/, log_tensorboard/ and saved/).

    Returns:
        dict: ``best_params``, ``best_result`` and ``results`` as :func:`run_hyper`; trials that the
        scheduler stopped early have no test result and are not candidates for best.
    """
    import ray
    from ray import air, tune

    _check_algo(algo)
    config = _driver_config(model, dataset, config_file_list, config_dict)
    params = read_params_file(params_file)
    space = _ray_space(params, algo)
    _check_not_on_command_line(space, config)
    metric, mode = config["valid_metric"].lower(), "max" if config["valid_metric_bigger"] else "min"
    fixed = _fixed_keys(config, config_dict)
    scheduler = scheduler or _asha(config, params, metric, mode)
    search_alg = None
    if algo == "bayes":
        from ray.tune.search.hyperopt import HyperOptSearch

        search_alg = HyperOptSearch(metric=metric, mode=mode)
    trainable = tune.with_parameters(
        ray_trial, config_file_list=_absolute(config_file_list), config_dict=fixed, threads=max(int(cpus_per_trial), 1)
    )
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, runtime_env=runtime_env)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg, scheduler=scheduler, num_samples=1 if algo == "exhaustive" else max_evals
            ),
            run_config=air.RunConfig(storage_path=os.path.abspath(storage_path)),
        )
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    return _report_ray_results(results, list(space), metric, mode, output_file)


def _asha(config, params, metric, mode):
    from ray.tune.schedulers import ASHAScheduler

    # A trial reports once per validation, then once more with its test result. ASHA stops a trial
    # that reaches max_t, so max_t lies beyond the last report: only the scheduler's own decisions stop trials.
    reports = math.ceil(_max_epochs(config, params) / max(config["eval_step"], 1)) + 1
    return ASHAScheduler(metric=metric, mode=mode, max_t=reports + 1, grace_period=1, reduction_factor=2)


def ray_trial(params, config_file_list=None, config_dict=None, threads=1):
    r"""One Ray Tune trial: :func:`recbole_llm.quick_start.run_trial` with ``params`` over the
    fixed keys, reporting ``{<valid metric>: score}`` after every validation and, at the end,
    the best valid score with the best valid and test results.

    Ray imports this module in its workers, and with it :mod:`recbole_llm` (its compat shims and
    plugin models). The GPUs are the ones Ray gave the trial (``gpu_id``), none on a CPU trial.
    """
    import ray
    import torch
    from ray.air import session

    torch.set_num_threads(threads)
    gpu_id = ",".join(str(gpu) for gpu in ray.get_gpu_ids())
    # A Ray worker's sys.argv is Ray's: the driver passed the user's command-line keys in config_dict.
    config = Config(config_file_list=config_file_list, config_dict={**config_dict, **params, "gpu_id": gpu_id}, command_line=False)
    if os.path.isabs(config["checkpoint_dir"]):
        # Trials run side by side and RecBole names checkpoints by the second they start at.
        config["checkpoint_dir"] = os.path.join(config["checkpoint_dir"], session.get_trial_name())
    metric = config["valid_metric"].lower()

    def report_validation(epoch_idx, valid_score):
        session.report({metric: valid_score, "epoch": epoch_idx})

    result = run_trial(config, saved=True, callback_fn=report_validation)
    session.report({metric: result["best_valid_score"], **result})


def read_params_file(path):
    r"""RecBole's params file as ``[(key, kind, values)]``; kind is choice, uniform, quniform or loguniform."""
    params = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.strip().split(" ")
            if len(fields) < 3:
                continue
            name, kind, value = fields[0], fields[1], "".join(fields[2:])
            if kind == "choice":
                params.append((name, kind, ast.literal_eval(value)))
            elif kind in ("uniform", "quniform", "loguniform"):
                params.append((name, kind, [float(v) for v in value.split(",")]))
            else:
                raise ValueError(f"{path}: illegal param type [{kind}] for {name}")
    return params


def _ray_space(params, algo):
    from ray import tune

    space = {}
    for name, kind, values in params:
        if kind == "choice":
            space[name] = tune.grid_search(values) if algo == "exhaustive" else tune.choice(values)
        elif algo == "exhaustive":
            raise ExhaustiveSearchError(f"{name} is {kind}: exhaustive search takes choice keys only; use --algo=random or bayes")
        elif kind == "uniform":
            space[name] = tune.uniform(*values)
        elif kind == "quniform":
            space[name] = tune.quniform(*values)
        else:  # hyperopt's loguniform bounds are natural logs
            space[name] = tune.loguniform(math.exp(values[0]), math.exp(values[1]))
    return space


def _check_algo(algo):
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")


def _driver_config(model, dataset, config_file_list, config_dict):
    r"""The search's Config: model, dataset, valid metric and command-line keys, before any trial runs."""
    # RecBole's Config sets CUDA_VISIBLE_DEVICES to gpu_id; a local Ray cluster started afterwards
    # must still see every GPU of the machine.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        return Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    finally:
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible


def _check_not_on_command_line(space, config):
    both = sorted(set(space) & set(config.cmd_config_dict))
    if both:
        raise ValueError(
            f"{both} are searched by the params file and fixed on the command line, which would win in every "
            "trial (RecBole's Config priority): drop them from one of the two."
        )


def _fixed_keys(config, config_dict):
    r"""Keys every Ray trial gets: the caller's dict, the command line's keys, and absolute paths."""
    fixed = {**(config_dict or {}), **{k: v for k, v in config.cmd_config_dict.items() if k not in CLI_FLAGS}}
    fixed.update(model=config["model"], dataset=config["dataset"], profile_dir=os.path.abspath(store_dir(config["profile_dir"], config["dataset"])))
    fixed["data_path"] = os.path.abspath(os.path.dirname(os.path.normpath(config["data_path"])))
    return fixed


def _absolute(config_file_list):
    return [os.path.abspath(path) for path in config_file_list] if config_file_list else None


def _max_epochs(config, params):
    for name, kind, values in params:
        if name == "epochs":
            high = max(values) if kind == "choice" else values[1]
            return int(math.exp(high) if kind == "loguniform" else high)
    return config["epochs"]


def _report_ray_results(results, keys, metric, mode, output_file):
    r"""Write RecBole's result file for the Ray trials, print and return the best finished one."""
    finished = {}
    with open(output_file, "w") as f:
        for result in results:
            params = {k: result.config[k] for k in keys if k in result.config}
            metrics = result.metrics or {}
            f.write(HyperTuning.params2str(params) + "\n")
            if result.error is not None:
                f.write(f"Failed: {result.error!r}\n\n")
            elif "test_result" in metrics:
                finished[HyperTuning.params2str(params)] = (params, {k: metrics[k] for k in RESULT_KEYS})
                f.write(f"Valid result:\n{dict2str(metrics['best_valid_result'])}\nTest result:\n{dict2str(metrics['test_result'])}\n\n")
            else:
                iterations = metrics.get("training_iteration")
                f.write(f"Stopped early by the scheduler after {iterations} validations: {metric} {metrics.get(metric)}\n\n")
    if not finished:
        raise RuntimeError(f"no Ray Tune trial finished; see {output_file} and the trials' logs")
    pick = max if mode == "max" else min
    best_params, best_result = pick(finished.values(), key=lambda item: item[1]["best_valid_score"])
    _print_best(best_params, best_result)
    return {"best_params": best_params, "best_result": best_result, "results": {k: v[1] for k, v in finished.items()}}


def _print_best(best_params, best_result):
    print("best params: ", best_params)
    print("best result: ")
    print(best_result)
