r"""Entry points that mirror ``recbole.quick_start`` for plugin models: same steps, same results,
with the plugin's :class:`~recbole_llm.config.Config`, model lookup and trainers
(:mod:`recbole_llm.trainer`). A run that trains prepares the profile store once, after RecBole
built the split and before the model is built (:func:`recbole_llm.build.ensure_profiles`); a
checkpoint reload only reads it."""

import logging
import sys
from logging import getLogger

import torch
import torch.distributed as dist
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_llm.build import ensure_profiles
from recbole_llm.compat import load_checkpoint
from recbole_llm.config import Config
from recbole_llm.data.atomic import create_dataset
from recbole_llm.data.preparation import data_preparation
from recbole_llm.trainer import get_trainer
from recbole_llm.utils import get_model


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1, ip="localhost",
        port="5678", group_offset=0, checkpoint=None):
    r"""Train and test ``model`` on ``dataset`` in one process or, with ``nproc > 1`` or
    ``world_size > 0``, in ``nproc`` processes on this machine out of ``world_size`` in all
    (global ranks ``group_offset`` ... ``group_offset + nproc - 1`` here; rank 0 listens on ``ip:port``).

    Returns:
        dict: as :func:`run_recbole_llm`, from this machine's first process (every rank gets the
        same, all-reduced metrics).
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_llm(model, dataset, config_file_list, config_dict, saved, checkpoint=checkpoint)
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    kwargs = {"config_dict": config_dict, "saved": saved, "queue": queue, "checkpoint": checkpoint}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_rank(rank, model, dataset, config_file_list, kwargs):
    kwargs["config_dict"]["local_rank"] = rank
    run_recbole_llm(model, dataset, config_file_list, **kwargs)


def run_recbole_llm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None, checkpoint=None):
    r"""Train and test like ``recbole.quick_start.run_recbole``; plugin models included.

    Args:
        checkpoint (str, optional): a checkpoint written by an earlier run of the same model and
            config; training resumes after its epoch (RecBole saves at each best validation) with
            its weights, optimizer state and best score (RecBole's ``Trainer.resume_checkpoint``)
            and keeps saving into that file.

    Returns:
        dict: best_valid_score, valid_score_bigger, best_valid_result, test_result.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    _init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    transform = construct_transform(config)
    flops = get_flops(model, dataset, config["device"], logger, transform)
    logger.info(set_color("FLOPs", "blue") + f": {flops}")

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if checkpoint:
        trainer.resume_checkpoint(checkpoint)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def objective_function(config_dict=None, config_file_list=None, saved=True):
    r"""RecBole's HyperTuning objective for plugin models: train, validate, test one configuration."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    return run_trial(config, saved)


def run_trial(config, saved=True, callback_fn=None):
    r"""Train, validate and test one tuning trial of ``config`` quietly.

    Args:
        callback_fn (callable, optional): called as ``callback_fn(epoch_idx, valid_score)`` after
            every validation (RecBole's ``Trainer.fit`` hook; Ray Tune reports through it).

    Returns:
        dict: model, best_valid_score, valid_score_bigger, best_valid_result, test_result.
    """
    init_seed(config["seed"], config["reproducibility"])
    _init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved, callback_fn=callback_fn)
    test_result = trainer.evaluate(test_data, load_best_model=saved)
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


def _init_logger(config):
    # RecBole's init_logger configures the root logger through logging.basicConfig, which does nothing
    # once handlers exist: the previous run's go first, or a second run in this process logs nowhere.
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()
    init_logger(config)


def load_data_and_model(model_file):
    r"""Load a checkpoint written by a run (plugin models included) with its data splits.

    A checkpoint of a multi-process run reloads in this one process, and one written on a GPU
    reloads on a CPU-only machine.

    Returns:
        tuple: config, model, dataset, train_data, valid_data, test_data
    """
    checkpoint = load_checkpoint(model_file, map_location="cpu")
    config = checkpoint["config"]
    _single_process(config)
    init_seed(config["seed"], config["reproducibility"])
    _init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def _single_process(config):
    # A rank's config describes its process group and device; this process has neither.
    if not config["single_spec"]:
        config["single_spec"] = True
        config["local_rank"] = 0
        if config["device"].type == "cuda":
            config["device"] = torch.device("cuda")
    if config["device"].type == "cuda" and not torch.cuda.is_available():
        config["device"] = torch.device("cpu")
