#!/usr/bin/env python3
"""Reference vectors for lmrl's rl/ algorithms, computed by TRL's and verl's own code.

Usage (see tools/README.md for the virtualenv):

    python tools/make_rl_reference.py tests/data/rl_reference.txt

Every expected number comes from calling the library function itself (verl's
core_algos / rollout_corr_helper functions, TRL's GRPOTrainer._compute_loss on
a minimal trainer object), never from a re-typed formula. The one exception is
TRL's reward-to-advantage step and its vLLM importance-sampling ratio, which
TRL computes inline in _generate_and_score_completions; those are mirrored op
for op and the TRL lines are quoted next to the mirror.

Everything is torch.float64. Inputs are drawn from a seeded generator, so the
output file is the same on every run with the same library versions.

Output format (read by lmrl::testing::load_reference in tests/support/testing.hpp):

    case <name>
    <key> <count> <v1> ... <vcount>      matrices row-major, shapes as `shape 2 B T`
    str <key> <text>
    end
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import math
import os
import sys
import types
from collections import defaultdict

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
DT = torch.float64


# --------------------------------------------------------------------------- loading verl
#
# verl is installed with --no-deps: its package __init__ pulls in ray and the
# whole trainer stack. core_algos.py only needs omegaconf, tensordict, codetiming
# and orjson (pip-installed into the venv); ray is never called by the functions
# used here, so it is replaced by an inert stub module, and the verl package is
# entered without running verl/__init__.py.


class _Inert:
    """Stands in for any ray attribute: a callable, a decorator, a base class."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]  # used as a decorator
        return _INERT

    def __getattr__(self, name):
        return _INERT

    def __mro_entries__(self, bases):
        return (object,)


_INERT = _Inert()


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _INERT


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    roots = ("ray",)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _InertModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def load_verl():
    try:
        import ray  # noqa: F401  (a real ray is fine too)
    except ImportError:
        sys.meta_path.insert(0, _StubFinder())
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("verl is not installed in this interpreter")
    package = types.ModuleType("verl")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["verl"] = package
    core = importlib.import_module("verl.trainer.ppo.core_algos")
    rollout = importlib.import_module("verl.trainer.ppo.rollout_corr_helper")
    actor = importlib.import_module("verl.workers.config.actor")
    algo = importlib.import_module("verl.trainer.config.algorithm")
    from importlib.metadata import version

    return types.SimpleNamespace(core=core, rollout=rollout, actor=actor, algo=algo, version=version("verl"))


# --------------------------------------------------------------------------- output


def fmt(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)  # shortest string that round-trips the double exactly


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.count = 0
        self.families: dict[str, int] = defaultdict(int)

    def case(self, name: str, family: str, strings: dict, numbers: dict):
        assert name not in self.names, name
        self.names.add(name)
        self.count += 1
        self.families[family] += 1
        self.lines.append(f"case {name}")
        self.lines.append(f"str family {family}")
        for key, text in strings.items():
            self.lines.append(f"str {key} {text}")
        for key, value in numbers.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                flat = value.detach().reshape(-1).tolist()
            elif isinstance(value, (list, tuple, np.ndarray)):
                flat = list(np.asarray(value, dtype=np.float64).reshape(-1))
            else:
                flat = [value]
            self.lines.append(f"{key} {len(flat)} " + " ".join(fmt(v) for v in flat))
        self.lines.append("end")


# --------------------------------------------------------------------------- random inputs


class Rand:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.np = np.random.default_rng(seed)

    def uniform(self, shape, lo=-1.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(shape, generator=self.g, dtype=DT)

    def normal(self, shape, scale=1.0):
        return scale * torch.randn(shape, generator=self.g, dtype=DT)

    def int(self, lo, hi):  # inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=self.g).item())

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def mask(self, B, T, kind="right_padded"):
        """Right-padded 0/1 mask, every row with at least one active token; 'interior' also
        zeroes some tokens inside a row (tool output / observation tokens)."""
        m = torch.zeros(B, T, dtype=DT)
        for i in range(B):
            n = self.int(1, T)
            m[i, :n] = 1
            if kind == "interior" and n >= 3:
                for t in range(1, n - 1):
                    if self.int(0, 3) == 0:
                        m[i, t] = 0
        return m

    def logps(self, B, T):
        """Log-probs of sampled tokens: negative, typical LM range."""
        return -self.uniform((B, T), 0.05, 3.0)

    def near(self, x, scale):
        """A second policy's log-probs close to x (ratios within a few percent to ~x2)."""
        return (x + self.normal(x.shape, scale)).clamp(max=-0.01)  # still a log-probability

    def binary_scores(self, B):
        return (torch.rand(B, generator=self.g) < 0.5).to(DT)

    def scores(self, B, kind):
        if kind == "binary":
            return self.binary_scores(B)
        if kind == "integer":
            return torch.randint(0, 4, (B,), generator=self.g).to(DT)
        return self.uniform((B,), -2.0, 2.0)


def shape_fields(B, T):
    return {"shape": [B, T]}


def outcome_token_rewards(scores, mask):
    """verl's outcome rewards: the whole score on the last active token of each row."""
    B, T = mask.shape
    r = torch.zeros(B, T, dtype=DT)
    for i in range(B):
        last = int(torch.nonzero(mask[i]).max().item())
        r[i, last] = scores[i]
    return r


# --------------------------------------------------------------------------- TRL advantages
#
# TRL 1.x computes advantages inline in GRPOTrainer._generate_and_score_completions
# (trl/trainer/grpo_trainer.py). The function below repeats those lines with the
# same torch ops; the TRL source is quoted line by line.


def trl_advantages(rewards_per_func, reward_weights, num_generations, scale_rewards, multi_objective_aggregation):
    from trl.trainer.utils import nanstd

    # unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    if multi_objective_aggregation == "sum_then_normalize":
        # rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        rewards = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
        # rewards[unscorable_mask] = torch.nan
        rewards[unscorable_mask] = torch.nan
        # mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
        mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
        # mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
        mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
        if scale_rewards in ["group", "none"]:
            if num_generations > 1:
                # std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
                std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
                # std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
                std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
            else:
                std_rewards = torch.zeros_like(rewards)
        elif scale_rewards == "batch":
            if rewards.numel() > 1:
                # std_rewards = nanstd(rewards).expand_as(rewards)
                std_rewards = nanstd(rewards).expand_as(rewards)
            else:
                std_rewards = torch.zeros_like(rewards)
        else:
            raise ValueError(scale_rewards)
        # advantages = rewards - mean_grouped_rewards
        advantages = rewards - mean_grouped_rewards
        # if self.scale_rewards != "none":
        #     advantages = advantages / (std_rewards + 1e-4)
        if scale_rewards != "none":
            advantages = advantages / (std_rewards + 1e-4)
    elif multi_objective_aggregation == "normalize_then_sum":
        K = rewards_per_func.shape[1]
        # grouped = rewards_per_func.view(-1, num_generations, len(self.reward_funcs))
        grouped = rewards_per_func.view(-1, num_generations, K)
        # mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
        mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
        # std_k = nanstd(grouped, dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(mean_k)
        std_k = nanstd(grouped, dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(mean_k)
        # reward_k = (grouped - mean_k) / (std_k + 1e-4)
        reward_k = (grouped - mean_k) / (std_k + 1e-4)
        # reward_k = reward_k.view(-1, len(self.reward_funcs))
        reward_k = reward_k.view(-1, K)
        # rewards = (reward_k * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        rewards = (reward_k * reward_weights.unsqueeze(0)).nansum(dim=1)
        # rewards[unscorable_mask] = torch.nan
        rewards[unscorable_mask] = torch.nan
        # std_rewards = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        std_rewards = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        # advantages = (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)
        advantages = (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)
    else:
        raise ValueError(multi_objective_aggregation)
    # advantages = torch.nan_to_num(advantages, nan=0.0)
    advantages = torch.nan_to_num(advantages, nan=0.0)
    return advantages


def gen_trl_advantages(w: Writer, r: Rand):
    n = 0
    for scale in ["group", "batch", "none"]:
        for G in range(2, 9):
            for kind in ["binary", "continuous"]:
                groups = r.int(1, 4)
                B = G * groups
                scores = r.scores(B, kind)
                if kind == "binary" and G >= 3:
                    scores[:G] = 1.0  # one uniform group: zero advantage, std 0
                missing = G >= 4 and scale != "batch" and (G + groups) % 2 == 0
                if missing:
                    scores[1] = float("nan")  # an unscorable completion
                adv = trl_advantages(scores.unsqueeze(1), torch.ones(1), G, scale, "sum_then_normalize")
                w.case(
                    f"trl_adv_{scale}_G{G}_{kind}_{n}",
                    "trl_advantages",
                    {"scale_rewards": scale, "multi_objective_aggregation": "sum_then_normalize"},
                    {"group_size": G, "scores": scores, "advantages": adv},
                )
                n += 1
    # several reward functions, weighted (TRL reward_weights), both aggregations
    for agg in ["sum_then_normalize", "normalize_then_sum"]:
        for k in range(6):
            G = r.int(2, 8)
            groups = r.int(1, 4)
            B = G * groups
            K = r.int(2, 3)
            comps = torch.stack([r.scores(B, "binary" if j == 0 else "continuous") for j in range(K)], dim=1)
            weights = r.uniform((K,), 0.25, 2.0)
            scale = r.choice(["group", "batch", "none"])
            adv = trl_advantages(comps, weights, G, scale, agg)
            w.case(
                f"trl_adv_multi_{agg}_{k}",
                "trl_advantages",
                {"scale_rewards": scale, "multi_objective_aggregation": agg},
                {
                    "group_size": G,
                    "components": [K],
                    "reward_components": comps,
                    "reward_weights": weights,
                    "scores": (comps * weights).sum(1),
                    "advantages": adv,
                },
            )


# --------------------------------------------------------------------------- verl advantages


def gen_verl_advantages(w: Writer, r: Rand, V):
    ca = V.core
    AlgoConfig = V.algo.AlgoConfig
    cases = 0

    def index_of(B, G):
        return np.array([f"p{i // G}" for i in range(B)], dtype=object)

    # grpo_vectorized is left out: verl.utils.group_mean_std computes in float32, so it is no float64 reference
    # (it equals grpo up to float32 rounding).
    group_estimators = ["grpo", "rloo", "rloo_vectorized", "opo",
                        "reinforce_plus_plus_baseline", "gpg", "grpo_passk", "gdpo"]
    for est in group_estimators:
        variants = [True, False] if est in ("grpo", "grpo_passk", "gdpo") else [True]
        for norm in variants:
            for rep in range(4):
                G = r.int(2, 8)
                groups = r.int(1, 4)
                B, T = G * groups, r.int(1, 12)
                mask = r.mask(B, T)
                kind = r.choice(["binary", "integer", "continuous"])
                scores = r.scores(B, kind)
                if rep == 0 and G >= 2:
                    scores[:G] = scores[0]  # a uniform group
                token_rewards = outcome_token_rewards(scores, mask)
                index = index_of(B, G)
                config = AlgoConfig(norm_adv_by_std_in_grpo=norm)
                fn = ca.get_adv_estimator_fn(est)
                kwargs = dict(token_level_rewards=token_rewards.clone(), response_mask=mask.clone(), index=index,
                              config=config)
                if est in ("grpo", "gdpo"):
                    kwargs["norm_adv_by_std_in_grpo"] = norm
                if est == "gdpo" and mask.sum() < 2:
                    continue
                adv, ret = fn(**kwargs)
                w.case(
                    f"verl_adv_{est}_{'std' if norm else 'nostd'}_{rep}",
                    "verl_advantages",
                    {"estimator": est},
                    {
                        **shape_fields(B, T),
                        "group_size": G,
                        "norm_adv_by_std_in_grpo": float(norm),
                        "epsilon": 1e-6,
                        "mask": mask,
                        "scores": scores,
                        "token_rewards": token_rewards,
                        "advantages": adv,
                        "returns": ret,
                    },
                )
                cases += 1

    # REINFORCE++ (discounted token returns, whitened over the batch), ReMax and GAE use token rewards.
    for rep in range(10):
        B, T = r.int(1, 8), r.int(1, 12)
        kind = "interior" if rep >= 7 else "right_padded"
        mask = r.mask(B, T, kind)
        if mask.sum() < 2:
            mask[:, :] = 1
            if mask.sum() < 2:
                continue
        gamma = r.choice([1.0, 0.99, 0.9])
        token_rewards = r.uniform((B, T), -0.2, 0.2) * mask
        token_rewards += outcome_token_rewards(r.binary_scores(B), mask)
        adv, ret = ca.compute_reinforce_plus_plus_outcome_advantage(
            token_level_rewards=token_rewards.clone(), response_mask=mask.clone(), config=AlgoConfig(gamma=gamma))
        w.case(f"verl_adv_reinforce_plus_plus_{rep}", "verl_advantages", {"estimator": "reinforce_plus_plus",
                                                                            "mask_kind": kind},
               {**shape_fields(B, T), "group_size": 1, "gamma": gamma, "mask": mask,
                "scores": token_rewards.sum(-1), "token_rewards": token_rewards, "advantages": adv, "returns": ret})
    for rep in range(6):
        B, T = r.int(1, 8), r.int(1, 12)
        mask = r.mask(B, T)
        scores = r.scores(B, "binary")
        token_rewards = outcome_token_rewards(scores, mask)
        if rep >= 3:
            token_rewards += r.uniform((B, T), -0.1, 0.1) * mask
        baselines = r.scores(B, "binary")
        adv, ret = ca.compute_remax_outcome_advantage(
            token_level_rewards=token_rewards.clone(), reward_baselines=baselines.clone(), response_mask=mask.clone())
        w.case(f"verl_adv_remax_{rep}", "verl_advantages", {"estimator": "remax"},
               {**shape_fields(B, T), "group_size": 1, "mask": mask, "scores": token_rewards.sum(-1),
                "token_rewards": token_rewards, "baseline_scores": baselines, "advantages": adv, "returns": ret})
    for rep in range(10):
        B, T = r.int(1, 6), r.int(1, 12)
        kind = "interior" if rep >= 8 else "right_padded"
        mask = r.mask(B, T, kind)
        if mask.sum() < 2:
            mask[:, :] = 1
            if mask.sum() < 2:
                continue
        gamma = r.choice([1.0, 0.99])
        lam = r.choice([1.0, 0.95, 0.9])
        token_rewards = outcome_token_rewards(r.scores(B, "continuous"), mask)
        if rep % 2 == 1:
            token_rewards += r.uniform((B, T), -0.1, 0.1) * mask  # e.g. per-token KL in the reward
        values = r.uniform((B, T), -1.0, 1.0)
        adv, ret = ca.compute_gae_advantage_return(token_level_rewards=token_rewards.clone(), values=values.clone(),
                                                   response_mask=mask.clone(), gamma=gamma, lam=lam)
        w.case(f"verl_adv_gae_{rep}", "verl_advantages", {"estimator": "gae", "mask_kind": kind},
               {**shape_fields(B, T), "group_size": 1, "gamma": gamma, "lam": lam, "mask": mask,
                "scores": token_rewards.sum(-1), "token_rewards": token_rewards, "values": values,
                "advantages": adv, "returns": ret})


# --------------------------------------------------------------------------- KL estimators


def gen_verl_kl(w: Writer, r: Rand, V):
    ca = V.core
    names = ["k1", "kl", "abs", "mse", "k2", "low_var_kl", "k3", "k1+", "abs+", "mse+", "low_var_kl+", "k3+"]
    for name in names:
        for rep in range(2):
            B, T = r.int(1, 4), r.int(1, 12)
            logp = r.logps(B, T)
            ref = r.near(logp, 0.5 if rep == 0 else 2.0)
            if rep == 1 and B * T >= 3:
                ref.view(-1)[0] = logp.view(-1)[0] + 25.0  # beyond verl's +-20 clamp of k3
                ref.view(-1)[1] = logp.view(-1)[1] - 25.0
                ref.view(-1)[2] = logp.view(-1)[2]  # equal log-probs: |x| at its kink, gradient sign(0)=0
            x = logp.clone().requires_grad_(True)
            value = ca.kl_penalty(x, ref, name)
            (grad,) = torch.autograd.grad(value.sum(), x)
            w.case(f"verl_kl_{name.replace('+', 'plus')}_{rep}", "verl_kl", {"kl_penalty": name},
                   {**shape_fields(B, T), "logp": logp, "ref_logp": ref, "value": value, "grad": grad})


def gen_verl_kl_in_reward(w: Writer, r: Rand, V):
    ca = V.core
    for rep in range(4):
        B, T = r.int(1, 4), r.int(1, 12)
        mask = r.mask(B, T)
        scores = outcome_token_rewards(r.binary_scores(B), mask)
        old = r.logps(B, T)
        ref = r.near(old, 0.3)
        kl_ratio = r.choice([0.001, 0.04, 0.1])
        rewards = ca.compute_rewards(scores, old, ref, kl_ratio)
        w.case(f"verl_kl_in_reward_{rep}", "verl_kl_in_reward", {},
               {**shape_fields(B, T), "mask": mask, "token_scores": scores, "old_logp": old, "ref_logp": ref,
                "kl_coef": kl_ratio, "token_rewards": rewards})


def gen_verl_kl_controller(w: Writer, r: Rand, V):
    ca = V.core
    for rep in range(4):
        init, target, horizon = r.choice([0.001, 0.05, 0.2]), r.choice([0.01, 0.1, 6.0]), r.choice([10000, 500, 64])
        ctl = ca.AdaptiveKLController(init_kl_coef=init, target_kl=target, horizon=horizon)
        kls, steps, values = [], [], []
        for _ in range(8):
            kl = float(r.uniform((1,), 0.0, 3.0 * target).item())
            n = r.int(1, 256)
            ctl.update(kl, n)
            kls.append(kl)
            steps.append(n)
            values.append(float(ctl.value))
        w.case(f"verl_kl_ctrl_adaptive_{rep}", "verl_kl_controller", {"type": "adaptive"},
               {"kl_coef": init, "target_kl": target, "horizon": horizon, "current_kl": kls, "n_steps": steps,
                "values": values})


# --------------------------------------------------------------------------- TRL GRPO loss
#
# GRPOTrainer._compute_loss is called on an object made with object.__new__,
# carrying only the attributes the method reads. _get_per_token_logps_and_entropies
# is replaced by a function that returns our log-probs as a leaf tensor, so that
# autograd gives d loss / d logp.


def make_trl_trainer(loss_type, level, beta, eps_low, eps_high, delta, T, extra_args=None):
    from trl.trainer.grpo_trainer import GRPOTrainer

    t = object.__new__(GRPOTrainer)
    args = types.SimpleNamespace(delta=delta, use_bias_correction_kl=False, steps_per_generation=1,
                                 sapo_temperature_pos=1.0, sapo_temperature_neg=1.05,
                                 vespo_k_pos=2.0, vespo_lambda_pos=3.0, vespo_k_neg=3.0, vespo_lambda_neg=2.0)
    for k, v in (extra_args or {}).items():
        setattr(args, k, v)
    accel = types.SimpleNamespace(
        num_processes=1,
        sync_gradients=True,
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction="sum": x,
    )
    attrs = dict(
        args=args, loss_type=loss_type, importance_sampling_level=level, beta=beta, epsilon_low=eps_low,
        epsilon_high=eps_high, top_entropy_quantile=1.0, off_policy_mask_threshold=None, aux_loss_enabled=False,
        use_vllm=False, vllm_importance_sampling_correction=False, max_completion_length=T,
        current_gradient_accumulation_steps=1, accelerator=accel, model=types.SimpleNamespace(training=True),
        _entropy_bonus_enabled=False, use_adaptive_entropy=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    for k, v in attrs.items():
        object.__setattr__(t, k, v)
    return t


def trl_loss(trainer, logp, inputs):
    x = logp.clone().requires_grad_(True)
    entropies = torch.zeros_like(logp)

    def fake_logps(model, input_ids, attention_mask, logits_to_keep, **kwargs):
        return x, entropies, None

    object.__setattr__(trainer, "_get_per_token_logps_and_entropies", fake_logps)
    loss = trainer._compute_loss(None, inputs)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def trl_inputs(mask, adv, old, ref, num_items=None, is_ratio=None):
    B, T = mask.shape
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": torch.tensor(float(mask.sum() if num_items is None else num_items)),
    }
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    return inputs


def gen_trl_loss(w: Writer, r: Rand):
    settings = []
    for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]:
        for level in ["token", "sequence"]:
            for beta in [0.0, 0.04]:
                settings.append((loss_type, level, beta))
    for loss_type in ["cispo", "sapo", "luspo"]:
        for beta in [0.0, 0.04]:
            settings.append((loss_type, "sequence" if loss_type == "luspo" else "token", beta))
    n = 0
    for loss_type, level, beta in settings:
        clips = [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.28, 1.5)]  # PPO default, DAPO clip-higher, two-sided
        if loss_type == "cispo":
            clips = [(0.2, 5.0, None), (0.2, 1.2, None)]  # TRL's CISPO epsilon_high is an upper bound on the ratio
        if loss_type == "sapo":
            clips = [(0.2, 0.2, None)]
        for eps_low, eps_high, delta in clips:
            for rep in range(2):
                G = r.int(2, 4)  # group structure does not enter the loss; keep the file small
                groups = r.int(1, 2)
                B, T = G * groups, r.int(1, 12)
                mask = r.mask(B, T)
                logp = r.logps(B, T)
                old = r.near(logp, r.choice([0.05, 0.3]))  # small and large off-policyness: some tokens clip
                ref = r.near(logp, 0.3)
                adv = r.normal((B,))
                adv[0] = 0.0  # a zero advantage
                num_items = None
                if loss_type in ("dapo", "cispo") and rep == 1:
                    num_items = float(mask.sum()) * 3  # the step covers 3 such micro-batches
                trainer = make_trl_trainer(loss_type, level, beta, eps_low, eps_high, delta, T)
                loss, grad = trl_loss(trainer, logp, trl_inputs(mask, adv, old, ref, num_items))
                metrics = trainer._metrics["train"]
                numbers = {
                    **shape_fields(B, T), "group_size": G, "epsilon_low": eps_low, "epsilon_high": eps_high,
                    "delta": delta if delta is not None else None, "beta": beta, "max_completion_length": T,
                    "num_items_in_batch": float(mask.sum()) if num_items is None else num_items,
                    "mask": mask, "logp": logp, "old_logp": old, "ref_logp": ref,
                    "advantages": adv, "loss": loss, "grad": grad,
                }
                for key, name in [("clip_ratio/low_mean", "clip_ratio_low"), ("clip_ratio/high_mean", "clip_ratio_high"),
                                  ("clip_ratio/region_mean", "clip_ratio_region"), ("kl", "kl_mean"),
                                  ("cispo_clip_ratio", "cispo_clip_ratio")]:
                    if metrics.get(key):
                        numbers[name] = metrics[key][0]
                if loss_type == "sapo":
                    numbers["sapo_temperature_pos"] = 1.0
                    numbers["sapo_temperature_neg"] = 1.05
                w.case(f"trl_loss_{loss_type}_{level}_b{beta}_{n}", "trl_grpo_loss",
                       {"loss_type": loss_type, "importance_sampling_level": level}, numbers)
                n += 1

    # vLLM importance-sampling correction multiplies the per-token loss (TRL use_vllm + correction)
    for rep in range(4):
        G, groups = r.int(2, 6), r.int(1, 2)
        B, T = G * groups, r.int(2, 10)
        mask = r.mask(B, T)
        logp, old = r.logps(B, T), None
        old = r.near(logp, 0.1)
        ref = r.near(logp, 0.3)
        adv = r.normal((B,))
        is_ratio = torch.exp(r.normal((B, T), 0.3)).clamp(max=3.0) * mask
        loss_type = r.choice(["grpo", "dapo", "bnpo"])
        beta = r.choice([0.0, 0.04])
        trainer = make_trl_trainer(loss_type, "token", beta, 0.2, 0.28, None, T)
        object.__setattr__(trainer, "use_vllm", True)
        object.__setattr__(trainer, "vllm_importance_sampling_correction", True)
        loss, grad = trl_loss(trainer, logp, trl_inputs(mask, adv, old, ref, None, is_ratio))
        w.case(f"trl_loss_vllm_is_{loss_type}_{rep}", "trl_grpo_loss",
               {"loss_type": loss_type, "importance_sampling_level": "token"},
               {**shape_fields(B, T), "group_size": G, "epsilon_low": 0.2, "epsilon_high": 0.28, "beta": beta,
                "max_completion_length": T, "num_items_in_batch": float(mask.sum()), "mask": mask, "logp": logp,
                "old_logp": old, "ref_logp": ref, "advantages": adv, "importance_sampling_ratio": is_ratio,
                "loss": loss, "grad": grad})


def gen_trl_kl(w: Writer, r: Rand):
    """TRL's per-token KL (k3 without clamps) and its derivative, from _compute_loss itself: with zero
    advantages, loss_type dapo and num_items_in_batch = 1, the loss is beta * sum(mask * kl); a mask with one
    active token isolates that token's value, and autograd gives its derivative."""
    for rep in range(4):
        B, T = r.int(1, 3), r.int(1, 5)
        logp = r.logps(B, T)
        ref = r.near(logp, 0.5 if rep < 2 else 2.0)
        value = torch.zeros(B, T)
        grad = torch.zeros(B, T)
        for i in range(B):
            for t in range(T):
                single = torch.zeros(B, T)
                single[i, t] = 1
                trainer = make_trl_trainer("dapo", "token", 1.0, 0.2, 0.2, None, T)
                loss, g = trl_loss(trainer, logp, trl_inputs(single, torch.zeros(B), logp.clone(), ref, 1.0))
                value[i, t] = loss
                grad[i, t] = g[i, t]
        w.case(f"trl_kl_k3_{rep}", "trl_kl", {"kl_penalty": "k3"},
               {**shape_fields(B, T), "logp": logp, "ref_logp": ref, "value": value, "grad": grad})


# --------------------------------------------------------------------------- verl policy losses


AGG_MODES = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def actor_config(V, clip_low=0.2, clip_high=0.2, clip_c=3.0, tau_pos=1.0, tau_neg=1.05, dro_beta=None,
                 agg="token-mean", global_batch_info=None):
    A = V.actor
    cfg = A.ActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=1, rollout_n=1, clip_ratio=clip_low, clip_ratio_low=clip_low,
                        clip_ratio_high=clip_high, clip_ratio_c=clip_c, tau_pos=tau_pos, tau_neg=tau_neg,
                        loss_agg_mode=agg, policy_loss=A.PolicyLossConfig(dro_beta=dro_beta))
    if global_batch_info:
        cfg.global_batch_info.update(global_batch_info)  # a frozen field holding a mutable dict, as verl fills it
    return cfg


def gen_verl_policy_loss(w: Writer, r: Rand, V):
    ca = V.core
    modes = {
        "vanilla": [dict(clip_low=0.2, clip_high=0.2, clip_c=3.0), dict(clip_low=0.2, clip_high=0.28, clip_c=3.0),
                    dict(clip_low=0.1, clip_high=0.3, clip_c=1.5)],
        "gspo": [dict(clip_low=3e-4, clip_high=4e-4), dict(clip_low=0.2, clip_high=0.28)],
        "sapo": [dict(tau_pos=1.0, tau_neg=1.05), dict(tau_pos=2.0, tau_neg=4.0)],
        "gpg": [dict()],
        "cispo": [dict(clip_low=0.2, clip_high=0.28), dict(clip_low=1.0, clip_high=4.0)],
        "geo_mean": [dict(clip_low=0.4, clip_high=0.4), dict(clip_low=0.1, clip_high=0.2)],
        "dppo_tv": [dict(clip_low=0.05, clip_high=0.05, clip_c=20.0)],
        "dppo_kl": [dict(clip_low=0.01, clip_high=0.02, clip_c=20.0)],
        "dro": [dict(dro_beta=0.1)],
    }
    n = 0
    for mode, settings in modes.items():
        aggs = AGG_MODES if mode in ("vanilla", "gspo", "cispo") else ["token-mean", "seq-mean-token-mean"]
        if mode == "geo_mean":
            aggs = ["token-mean"]  # ignored by verl: the loss is a mean over sequences
        for s in settings:
            for agg in aggs:
                for rep in range(2 if mode == "vanilla" else 1):
                    B, T = r.int(1, 8), r.int(1, 12)
                    mask = r.mask(B, T)
                    logp = r.logps(B, T)
                    old = r.near(logp, r.choice([0.05, 0.3]))
                    seq_adv = r.normal((B,))
                    if mode == "geo_mean" or rep == 0:
                        adv = seq_adv.unsqueeze(1).expand(B, T).clone()  # outcome advantages: one per sequence
                    else:
                        adv = r.normal((B, T))  # per-token (GAE-style) advantages
                    if B >= 2:
                        adv[1] = 0.0
                    gbi = None
                    if rep == 1 and agg != "token-sum":
                        gbi = {"batch_num_tokens": float(mask.sum()) * 2, "global_batch_size": float(B) * 2}
                    cfg = actor_config(V, agg=agg, global_batch_info=gbi, **s)
                    fn = ca.get_policy_loss_fn(mode)
                    x = logp.clone().requires_grad_(True)
                    loss, metrics = fn(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask,
                                       loss_agg_mode=agg, config=cfg, rollout_is_weights=None)
                    (grad,) = torch.autograd.grad(loss, x)
                    numbers = {
                        **shape_fields(B, T), "mask": mask, "logp": logp, "old_logp": old, "advantages": adv,
                        "clip_ratio_low": cfg.clip_ratio_low, "clip_ratio_high": cfg.clip_ratio_high,
                        "clip_ratio_c": cfg.clip_ratio_c, "tau_pos": cfg.tau_pos, "tau_neg": cfg.tau_neg,
                        "dro_beta": s.get("dro_beta"),
                        "batch_num_tokens": gbi["batch_num_tokens"] if gbi else None,
                        "global_batch_size": gbi["global_batch_size"] if gbi else None,
                        "loss": loss.detach(), "grad": grad,
                    }
                    for key in ["pg_clipfrac", "ppo_kl", "pg_clipfrac_lower"]:
                        if f"actor/{key}" in metrics:
                            numbers[key] = metrics[f"actor/{key}"]
                    w.case(f"verl_pl_{mode}_{agg}_{n}", "verl_policy_loss", {"loss_mode": mode, "loss_agg_mode": agg},
                           numbers)
                    n += 1
    # rollout-correction weights multiply the per-token loss
    for rep in range(4):
        B, T = r.int(1, 6), r.int(2, 10)
        mask = r.mask(B, T)
        logp = r.logps(B, T)
        old = r.near(logp, 0.2)
        adv = r.normal((B,)).unsqueeze(1).expand(B, T).clone()
        weights = torch.exp(r.normal((B, T), 0.3)).clamp(max=2.0) * mask
        mode = r.choice(["vanilla", "gpg", "cispo"])
        agg = r.choice(["token-mean", "seq-mean-token-mean"])
        cfg = actor_config(V, agg=agg, clip_high=0.28)
        x = logp.clone().requires_grad_(True)
        loss, metrics = ca.get_policy_loss_fn(mode)(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask,
                                                    loss_agg_mode=agg, config=cfg, rollout_is_weights=weights)
        (grad,) = torch.autograd.grad(loss, x)
        w.case(f"verl_pl_{mode}_rollout_is_{rep}", "verl_policy_loss", {"loss_mode": mode, "loss_agg_mode": agg},
               {**shape_fields(B, T), "mask": mask, "logp": logp, "old_logp": old, "advantages": adv,
                "clip_ratio_low": cfg.clip_ratio_low, "clip_ratio_high": cfg.clip_ratio_high,
                "clip_ratio_c": cfg.clip_ratio_c, "rollout_is_weights": weights, "loss": loss.detach(), "grad": grad})


def gen_verl_agg_loss(w: Writer, r: Rand, V):
    ca = V.core
    n = 0
    for agg in AGG_MODES:
        for rep in range(4):
            B, T = r.int(1, 6), r.int(1, 12)
            mask = r.mask(B, T)
            loss_mat = r.normal((B, T))
            kwargs = {}
            if rep == 2:
                kwargs = {"batch_num_tokens": float(mask.sum()) * 4, "global_batch_size": float(B) * 4}
            if rep == 3 and agg == "seq-mean-token-sum-norm":
                kwargs = {"loss_scale_factor": 4096}
            x = loss_mat.clone().requires_grad_(True)
            loss = ca.agg_loss(loss_mat=x, loss_mask=mask, loss_agg_mode=agg, **kwargs)
            (weights,) = torch.autograd.grad(loss, x)
            w.case(f"verl_agg_{agg}_{n}", "verl_agg_loss", {"loss_agg_mode": agg},
                   {**shape_fields(B, T), "mask": mask, "loss_mat": loss_mat,
                    "batch_num_tokens": kwargs.get("batch_num_tokens"),
                    "global_batch_size": kwargs.get("global_batch_size"),
                    "loss_scale_factor": kwargs.get("loss_scale_factor"),
                    "loss": loss.detach(), "weights": weights})
            n += 1


def gen_verl_value_loss(w: Writer, r: Rand, V):
    ca = V.core
    for rep in range(4):
        B, T = r.int(1, 6), r.int(1, 12)
        mask = r.mask(B, T)
        values = r.uniform((B, T))
        vpreds = values + r.normal((B, T), 0.5)
        returns = values + r.normal((B, T), 0.5)
        clip = r.choice([0.2, 0.5])
        agg = r.choice(["token-mean", "seq-mean-token-mean"])
        x = vpreds.clone().requires_grad_(True)
        loss, clipfrac = ca.compute_value_loss(vpreds=x, returns=returns, values=values, response_mask=mask,
                                               cliprange_value=clip, loss_agg_mode=agg)
        (grad,) = torch.autograd.grad(loss, x)
        w.case(f"verl_value_loss_{rep}", "verl_value_loss", {"loss_agg_mode": agg},
               {**shape_fields(B, T), "mask": mask, "vpreds": vpreds, "values": values, "returns": returns,
                "cliprange_value": clip, "loss": loss.detach(), "grad": grad, "vf_clipfrac": clipfrac})


# --------------------------------------------------------------------------- rollout correction


def gen_verl_rollout(w: Writer, r: Rand, V):
    rc = V.rollout
    n = 0
    for level in ["token", "sequence"]:
        for threshold in [2.0, "0.5_2.0", 1.2]:
            for normalize in [False, True]:
                B, T = r.int(1, 6), r.int(1, 10)
                mask = r.mask(B, T)
                train = r.logps(B, T)
                rollout = r.near(train, 0.3 if level == "token" else 0.15)
                weights, _ = rc.compute_rollout_correction_weights(
                    log_ratio=train - rollout, response_mask=mask, rollout_is=level, rollout_is_threshold=threshold,
                    rollout_is_batch_normalize=normalize)
                w.case(f"verl_rollout_is_{level}_{n}", "verl_rollout_is",
                       {"rollout_is": level, "rollout_is_threshold": str(threshold)},
                       {**shape_fields(B, T), "mask": mask, "logp": train, "rollout_logp": rollout,
                        "batch_normalize": float(normalize), "weights": weights})
                n += 1
    options = [("token_k1", "0.7_1.4"), ("token_k2", "0.05"), ("token_k3", "0.05"), ("seq_sum_k1", "0.5_2.0"),
               ("seq_sum_k2", "0.2"), ("seq_sum_k3", "0.2"), ("seq_mean_k1", "0.8_1.25"), ("seq_mean_k2", "0.03"),
               ("seq_mean_k3", "0.03"), ("seq_max_k2", "0.1"), ("seq_max_k3", "0.1"),
               ("token_k1,seq_mean_k3", "0.7_1.4,0.03")]
    for rs, threshold in options:
        for rep in range(2):
            B, T = r.int(2, 6), r.int(1, 10)
            mask = r.mask(B, T)
            train = r.logps(B, T)
            rollout = r.near(train, 0.3)
            new_mask, _ = rc.compute_rollout_rejection_mask(log_ratio=train - rollout, response_mask=mask,
                                                            rollout_rs=rs, rollout_rs_threshold=threshold)
            w.case(f"verl_rollout_rs_{rs.replace(',', '_')}_{rep}", "verl_rollout_rs",
                   {"rollout_rs": rs, "rollout_rs_threshold": threshold},
                   {**shape_fields(B, T), "mask": mask, "logp": train, "rollout_logp": rollout,
                    "kept_mask": new_mask})


def trl_vllm_is_ratio(old_per_token_logps, sampling_per_token_logps, mask, mode, clip_min, clip_max):
    """Mirror of the importance-sampling block of TRL's _generate_and_score_completions."""
    # per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * mask
    per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * mask
    # per_token_logps_diff = torch.nan_to_num(per_token_logps_diff, nan=0.0)
    per_token_logps_diff = torch.nan_to_num(per_token_logps_diff, nan=0.0)
    # sequence_level_is = self.vllm_importance_sampling_mode in ["sequence_mask", "sequence_truncate"]
    sequence_level_is = mode in ["sequence_mask", "sequence_truncate"]
    if sequence_level_is:
        # per_sequence_logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
        logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
    else:
        logps_diff = per_token_logps_diff
    # vllm_importance_sampling_ratio = torch.exp(logps_diff)
    ratio = torch.exp(logps_diff)
    if mode in ["sequence_truncate", "token_truncate"]:
        # torch.clamp(vllm_importance_sampling_ratio, min=self.vllm_importance_sampling_clip_min,
        #             max=self.vllm_importance_sampling_clip_max)
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        min_val = clip_min if clip_min is not None else -math.inf
        max_val = clip_max if clip_max is not None else math.inf
        # invalid_mis_mask = (vllm_importance_sampling_ratio < min_val) | (vllm_importance_sampling_ratio > max_val)
        invalid = (ratio < min_val) | (ratio > max_val)
        # vllm_importance_sampling_ratio = vllm_importance_sampling_ratio.masked_fill(invalid_mis_mask, value=0.0)
        ratio = ratio.masked_fill(invalid, value=0.0)
    return ratio


def gen_trl_vllm_is(w: Writer, r: Rand):
    from trl import GRPOConfig
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    dmin, dmax = defaults.get("vllm_importance_sampling_clip_min"), defaults.get("vllm_importance_sampling_clip_max")
    n = 0
    for mode in ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]:
        for clip_min, clip_max in [(dmin, dmax), (0.5, 2.0)]:
            B, T = r.int(1, 6), r.int(1, 10)
            mask = r.mask(B, T)
            old = r.logps(B, T)
            sampling = r.near(old, 0.4 if mode.startswith("token") else 0.15)
            ratio = trl_vllm_is_ratio(old, sampling, mask, mode, clip_min, clip_max)
            w.case(f"trl_vllm_is_{mode}_{n}", "trl_vllm_is", {"vllm_importance_sampling_mode": mode},
                   {**shape_fields(B, T), "mask": mask, "old_logp": old, "sampling_logp": sampling,
                    "clip_min": clip_min, "clip_max": clip_max, "ratio": ratio})
            n += 1


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- distillation


def gen_trl_gkd(w: Writer, r: Rand):
    """TRL GKD's generalized_jsd_loss at beta 0 (forward KL, teacher || student) and 1 (reverse KL)."""
    from trl.experimental.gkd import GKDTrainer

    for rep in range(6):
        B, T, V = r.int(1, 3), r.int(1, 5), r.int(2, 40)
        beta = [0.0, 1.0][rep % 2]
        tau = r.choice([1.0, 0.7, 2.0])
        mask = r.mask(B, T)
        student = r.normal((B, T, V), 2.0)
        teacher = r.normal((B, T, V), 2.0)
        labels = torch.where(mask > 0, torch.zeros(B, T, dtype=torch.long), torch.full((B, T), -100))
        x = student.clone().requires_grad_(True)
        loss = GKDTrainer.generalized_jsd_loss(x, teacher, labels=labels, beta=beta, temperature=tau)
        (grad,) = torch.autograd.grad(loss, x)
        per_token = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, temperature=tau,
                                                    reduction="none").sum(-1)
        w.case(f"trl_gkd_{rep}", "trl_gkd", {"divergence": "forward_kl" if beta == 0 else "reverse_kl"},
               {**shape_fields(B, T), "V": V, "temperature": tau, "mask": mask, "student_logits": student,
                "teacher_logits": teacher, "kl": per_token, "loss": loss.detach(), "grad": grad})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", help="file to write, e.g. tests/data/rl_reference.txt")
    parser.add_argument("--seed", type=int, default=20250214)
    args = parser.parse_args()

    import transformers
    import trl

    V = load_verl()
    w = Writer()
    r = Rand(args.seed)
    gen_trl_advantages(w, r)
    gen_trl_loss(w, r)
    gen_trl_kl(w, r)
    gen_trl_vllm_is(w, r)
    gen_verl_advantages(w, r, V)
    gen_verl_kl(w, r, V)
    gen_verl_kl_in_reward(w, r, V)
    gen_verl_kl_controller(w, r, V)
    gen_verl_policy_loss(w, r, V)
    gen_verl_agg_loss(w, r, V)
    gen_verl_value_loss(w, r, V)
    gen_verl_rollout(w, r, V)
    gen_trl_gkd(w, r)

    header = [
        "# Reference vectors for lmrl's rl/ algorithms, computed by TRL's and verl's own functions.",
        "# Generated by tools/make_rl_reference.py; do not edit by hand (see tools/README.md).",
        f"# torch {torch.__version__}, trl {trl.__version__}, verl {V.version}, transformers {transformers.__version__},"
        f" python {sys.version.split()[0]}, seed {args.seed}, dtype float64",
        f"# {w.count} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(w.families.items())),
        "# Matrices are row-major with `shape 2 B T`; absent optional hyper-parameters are absent fields.",
    ]
    with open(args.output, "w") as out:
        out.write("\n".join(header + w.lines) + "\n")
    print(f"wrote {w.count} cases to {args.output} ({os.path.getsize(args.output)} bytes)")
    for k, v in sorted(w.families.items()):
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
