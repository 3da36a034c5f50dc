"""How `tests/test_documented_commands.py` runs every command line of README.md and docs/*.md at small scale.

One entry per documented command, keyed by the command as written (line continuations joined, the
trailing `# comment` dropped; spacing and quoting do not matter). A command with no entry fails the
test, so a new command in the docs needs one line here:

    "python -m recsys fit -c configs/recsys/bpr.yaml": Run(FIT_TOY),

- `add`: flags appended to the command (the CLIs take the last value of a repeated flag);
- `sub`: (documented text, replacement) pairs, for placeholders and option synopses like `[--name N]`;
- `makes` / `needs`: an input a later command reads (a checkpoint, a bundle, a running service).
  The command that `makes` it runs once per test module, and documented paths it writes under
  different names (`best-epoch=43.ckpt`) are linked by the test (see `PRODUCTS` there);
- `process`: run in its own Python process (DDP launches more processes from its own command line);
- `covered`: not run here, and why. Keep these few; each names where the command is covered instead.

Every command runs in one scratch directory (with `configs/` linked into it), so `artifacts/...`
paths land there. `curl` lines go to the service that `SERVICES` names for their port.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    add: str = ""
    sub: tuple[tuple[str, str], ...] = ()
    makes: str = ""
    needs: tuple[str, ...] = ()
    process: bool = False
    covered: str = ""


# Small-scale flags, shared by many entries.
TOY = "--data.world_preset toy --trainer.enable_progress_bar false"
FIT_TOY = f"{TOY} --trainer.max_epochs 2 --trainer.check_val_every_n_epoch 1"
PERSONALITY_TOY = ("--data.init_args.world_preset toy --trainer.max_epochs 2 --trainer.check_val_every_n_epoch 1 "
                   "--trainer.enable_progress_bar false")
DISCERN_TINY = ("--data.world_preset toy --data.world '{n_users: 120, n_items: 80, n_categories: 12, "
                "interactions_per_user: 10.0, review_rate: 1.0}' --rqvae.max_epochs 5 --rqvae.codebook_size 8 "
                "--rqvae.hidden_dims [32] --rqvae.latent_dim 8 --model.d_model 16 --model.n_heads 2 "
                "--model.ff_dim 32 --model.encoder_layers 1 --model.decoder_layers 1 --model.max_history 5 "
                "--train.max_epochs 1 --train.batch_size 128 --train.progress false --eval.beam_size 10 "
                "--eval.max_queries 40")
PPO_TINY = ("--model.init_args.total_timesteps 128 --model.init_args.num_envs 2 --model.init_args.num_steps 16 "
            "--model.init_args.num_minibatches 2 --model.init_args.update_epochs 1")
RLHG_TINY = f"{PPO_TINY} --model.init_args.human_value_timesteps 64"
RLHG_EXPERIMENT_TINY = ("--base-timesteps 64 --finetune-timesteps 32 --human-value-timesteps 32 --eval-episodes 4 "
                        "--ppo '{\"num_envs\": 2, \"num_steps\": 16, \"num_minibatches\": 2}' --workers 1 --seeds 1")
REGRET_TINY = "--mdps 1 --prefs 100 --steps 100 --workers 1"
REWARD_TINY = "--trainer.max_epochs 2"
PLURALISTIC_TINY = ("--seeds 2 --ms 2,10 --seen 12 --unseen 10 --val-pairs 5 --test-pairs 10 --steps 30 --restarts 1 "
                    "--workers 1 --n-policies 10")
PLURALISTIC_FIT_TINY = ("--trainer.max_epochs 1 --data.init_args.steps_per_epoch 5 --data.init_args.n_teachers 12 "
                        "--model.init_args.n_people 12")
SIMULATE_TINY = "--episodes 4"
COMPARE_NOISY_TINY = ("--seeds [0] --data.world_preset toy --data.world_users 200 --sweep '{false_positive_rate: [0.2]}' "
                      "--trainer.max_epochs 2 --trainer.check_val_every_n_epoch 1 "
                      "--models '{nbpo: {config: configs/recsys/nbpo.yaml}, bpr: {config: configs/recsys/bpr.yaml}}'")
COMPARE_PERSONALITY_TINY = (
    "--seeds [0] --data.world_preset toy --models '{traits: {config: configs/recsys/personality.yaml, max_epochs: 2}, "
    "no_traits: {config: configs/recsys/personality.yaml, init_args: {use_traits: false}, max_epochs: 2}}'")
COMPARE_HIDDEN_TINY = ("--seeds '[0, 1]' --trainer '{max_epochs: 2, check_val_every_n_epoch: 1}' "
                       "--data '{world_preset: toy, false_positive_rate: 0.0, seed: 0}' "
                       "--sweep '{missing_positive_rate: [0.0, 0.2]}'")
TUNE_HIDDEN_TINY = ("--trainer '{max_epochs: 2, check_val_every_n_epoch: 1}' "
                    "--data '{world_preset: toy, false_positive_rate: 0.0, seed: 0}' "
                    "--sweep '{missing_positive_rate: [0.2]}'")
HUMAN_TINY = "--bootstrap 200 --folds 5"
TRAITS_SWEEP_TINY = ("--seeds [0] --data.world_preset toy --data.world_users 200 --data.world_items 150 "
                     "--trainer.max_epochs 2 --sweep '{trait_influence: [0]}'")
BENCH = "a benchmark (minutes to hours; it rewrites the committed bench/results/*.json), run by people, not CI"

COMMANDS: dict[str, Run] = {
    # README: quick start and development
    "make demo": Run(sub=(("make demo", "python -m recsys demo --max-epochs 2 --out artifacts/demo"),)),
    "make test": Run(covered="the suite itself: this test is part of it"),
    "make lint": Run(sub=(("make lint", "ruff check ."),)),
    "make bench": Run(covered=BENCH),
    "python -m bench scaling": Run(covered=BENCH),
    "python -m bench ann": Run(covered=BENCH),
    "python -m bench vector_env": Run(covered=BENCH),
    ".venv/bin/python -m bench training": Run(covered=BENCH),
    # the preference world
    "python -m recsys world --out artifacts/world --preset toy --quiet": Run(),
    "python -m recsys.data.world_movielens --out artifacts/ml1m-world": Run("--preset toy", makes="ml1m_world"),
    # training, test, predict, compare
    "python -m recsys fit -c configs/recsys/nbpo.yaml": Run(FIT_TOY, makes="nbpo_run"),
    "python -m recsys fit -c configs/recsys/bpr.yaml --data.path ml-1m/ratings.dat": Run(
        "--trainer.max_epochs 1 --trainer.enable_progress_bar false", needs=("ml1m_world",)),
    "python -m recsys test -c configs/recsys/nbpo.yaml --ckpt_path artifacts/runs/nbpo/checkpoints/best-epoch=43.ckpt":
        Run(TOY, needs=("nbpo_run",)),
    "python -m recsys predict -c configs/recsys/nbpo.yaml --ckpt_path ...": Run(
        TOY, sub=(("...", "artifacts/runs/nbpo/checkpoints/best-epoch=43.ckpt"),), needs=("nbpo_run",)),
    "python -m recsys compare -c configs/recsys/compare_noisy.yaml --out artifacts/compare/noisy":
        Run(COMPARE_NOISY_TINY),
    "python -m recsys compare -c configs/recsys/tune_noisy.yaml --out artifacts/tune/noisy": Run(COMPARE_NOISY_TINY),
    "python -m recsys compare -c configs/recsys/compare_pluralistic.yaml --out artifacts/compare/pluralistic": Run(
        "--override '{seeds: [0], world: {preset: toy, n_users: 160, n_items: 150, taste_types: 3}, users: "
        "{seen: 80, validation: 40, test: 40}, comparisons: [1, 10], model: {epochs: 2}, placement_priors: [1.0]}'"),
    "python -m recsys compare -c configs/recsys/compare_pluralistic_implicit.yaml": Run(
        "--out artifacts/compare/pluralistic_implicit --override '{seeds: [0], world: {preset: toy, n_users: 160, "
        "n_items: 150, taste_types: 3}, users: {seen: 80, validation: 40, test: 40}, comparisons: [1, 10], "
        "model: {epochs: 2}, placement_priors: [1.0]}'"),
    "python -m recsys fit -c configs/recsys/bpr.yaml": Run(FIT_TOY),
    "python -m recsys fit -c configs/recsys/bpr.yaml --seeds 0,1,2": Run(
        FIT_TOY + " --seeds 0,1 --trainer.default_root_dir artifacts/runs/bpr_seeds"),
    # its own process: numba reads NUMBA_NUM_THREADS once, when its threads start
    "NUMBA_NUM_THREADS=1 python -m recsys fit -c configs/recsys/bpr.yaml --trainer.default_root_dir "
    "artifacts/runs/bpr_1thread": Run(FIT_TOY, process=True),
    "python -m recsys fit -c configs/recsys/bpr.yaml --model.init_args.hogwild true": Run(
        FIT_TOY + " --trainer.default_root_dir artifacts/runs/bpr_hogwild"),
    "python -m recsys fit -c configs/recsys/bpr_movielens.yaml --data.path ../shared/data/ml-100k/ml-100k.inter "
    "--data.format recbole": Run("--trainer.max_epochs 3 --trainer.check_val_every_n_epoch 1 "
                                 "--trainer.enable_progress_bar false", needs=("shared_data",)),
    "python -m bench.bpr_timing": Run("--quick --data ../shared/data/ml-100k/ml-100k.inter", needs=("shared_data",)),
    "OMP_NUM_THREADS=1 python -m recsys fit -c configs/recsys/bpr_movielens_autograd.yaml --data.path "
    "../shared/data/ml-100k/ml-100k.inter --data.format recbole": Run(
        "--trainer.max_epochs 2 --trainer.check_val_every_n_epoch 1 --trainer.enable_progress_bar false",
        needs=("shared_data",)),
    "python -m recsys fit -c configs/recsys/nbpo_authors.yaml": Run(FIT_TOY + " --trainer.default_root_dir "
                                                                    "artifacts/runs/nbpo_authors"),
    "python -m recsys compare -c configs/recsys/compare_hidden.yaml --out artifacts/compare/hidden": Run(
        COMPARE_HIDDEN_TINY, makes="hidden_compare"),
    "python -m recsys compare -c configs/recsys/tune_nbpo_authors.yaml --out artifacts/tune/nbpo_authors": Run(
        TUNE_HIDDEN_TINY),
    "python -m recsys.experiments.nbpo_findings distill hidden_likes --metrics artifacts/compare/hidden/metrics.json": Run(
        "--out artifacts/nbpo_hidden_likes.json", needs=("hidden_compare",)),
    # the public sequence data: SASRec and TIGER at the paper's size, shrunk
    "python -m recsys fit -c configs/recsys/sasrec.yaml --data.path ../shared/data/amazon-toys": Run(
        "--trainer.max_epochs 1 --trainer.limit_train_batches 5 --trainer.limit_val_batches 2 "
        "--trainer.limit_test_batches 2 --trainer.check_val_every_n_epoch 1 --trainer.enable_progress_bar false",
        needs=("shared_data",)),
    "python -m recsys discern -c configs/recsys/tiger_paper.yaml --data.sequences ../shared/data/amazon-toys "
    "--out artifacts/discern/tiger-toys": Run(
        "--model.d_model 32 --model.ff_dim 64 --model.encoder_layers 1 --model.decoder_layers 1 --model.n_heads 2 "
        "--rqvae.max_epochs 1 --rqvae.codebook_size 16 --rqvae.hidden_dims [32] --train.max_epochs 1 "
        "--train.max_minutes 0.2 --eval.max_queries 50 --train.progress false", needs=("shared_data",)),
    "python -m recsys discern -c configs/recsys/tiger_sdpo.yaml --data.sequences ../shared/data/amazon-toys "
    "--out artifacts/findings/tiger_sdpo_amazon": Run(
        "--model.d_model 16 --model.ff_dim 32 --model.encoder_layers 1 --model.decoder_layers 1 --model.n_heads 2 "
        "--rqvae.max_epochs 1 --rqvae.codebook_size 16 --rqvae.hidden_dims [32] --train.max_epochs 1 "
        "--train.max_minutes 0.2 --dpo.max_epochs 1 --dpo.max_train_pairs 200 --eval.max_queries 50 "
        "--train.progress false", needs=("shared_data",)),
    "python -m bench findings --list": Run(),
    "python -m bench findings --check": Run(),
    "python -m bench findings regret_vs_return": Run("--quick --out artifacts/findings-quick"),
    "python -m bench findings --quick --out artifacts/findings-quick": Run(
        sub=(("--quick", "regret_vs_return --quick"),)),
    "python -m recsys.experiments.nbpo_findings render": Run(
        f"--docs docs_copy.md --results {REPO / 'docs' / 'results'}", needs=("docs_copy",)),
    "python -m recsys compare -c configs/recsys/tune_hidden_ml100k.yaml --out artifacts/tune/hidden_ml100k": Run(
        "--trainer '{max_epochs: 2, check_val_every_n_epoch: 1}'", needs=("shared_data",)),
    "python -m recsys compare -c configs/recsys/compare_hidden_ml100k.yaml --out artifacts/compare/hidden_ml100k":
        Run("--trainer '{max_epochs: 2, check_val_every_n_epoch: 1}' --seeds '[0]' --sweep '{hide_positives: [0.2]}'",
            makes="hidden_ml100k_compare"),
    "python -m recsys.experiments.nbpo_findings distill ml100k_hidden --metrics artifacts/compare/hidden_ml100k/metrics.json":
        Run("--out artifacts/nbpo_ml100k_hidden.json", needs=("hidden_ml100k_compare",)),
    "python -m recsys fit -c configs/recsys/bpr_movielens.yaml --data.path artifacts/ml1m-world/ratings.dat "
    "--seeds 0,1,2": Run("--trainer.max_epochs 1 --trainer.enable_progress_bar false --seeds 0", needs=("ml1m_world",)),
    "python -m recsys fit -c configs/recsys/popularity.yaml --data.path artifacts/ml1m-world/ratings.dat "
    "--data.format movielens --model.init_args.eval_ks \"[10, 20]\" "
    "--trainer.default_root_dir artifacts/runs/popularity_movielens": Run(
        "--trainer.enable_progress_bar false", needs=("ml1m_world",)),
    # several processes (each rank is its own Python process)
    "python -m recsys fit -c configs/recsys/bpr.yaml --trainer.strategy ddp --trainer.devices 2": Run(
        FIT_TOY + " --model.init_args.num_threads 1", process=True),
    "python -m recsys fit -c configs/recsys/nbpo.yaml --trainer.strategy ddp --trainer.devices 2 "
    "--model.init_args.engine autograd --model.init_args.lr 0.005 --model.init_args.sharding table_wise": Run(
        FIT_TOY + " --trainer.default_root_dir artifacts/runs/nbpo_sharded", process=True),
    "torchrun --nnodes 2 --nproc_per_node 4 --node_rank 0 --master_addr node0.example --master_port 29500 "
    "-m recsys fit -c configs/recsys/nbpo.yaml --trainer.strategy ddp --trainer.num_nodes 2 --trainer.devices 4":
        Run(covered="needs two machines; the two-process DDP fit above runs the same code path on one"),
    # evaluating lists from any system
    "printf 'user,item,rank\\nu1,a,1\\nu1,b,2\\nu1,c,3\\nu2,c,1\\nu2,d,2\\n' > recs.csv": Run(),
    "printf 'user,item,label\\nu1,b,1\\nu1,e,1\\nu2,a,1\\nu2,d,0\\nu3,a,1\\n' > truth.csv": Run(),
    "printf 'user,item\\nu1,a\\nu2,b\\n' > train.csv": Run(),
    "python -m recsys evaluate --recs recs.csv --truth truth.csv --train train.csv --k 1,2 --out report": Run(
        needs=("evaluation_inputs",)),
    # export and serving
    "python -m recsys export --ckpt artifacts/runs/nbpo/checkpoints/best-epoch=43.ckpt --out artifacts/bundles/nbpo "
    "--name nbpo": Run(makes="nbpo_bundle", needs=("nbpo_run",)),
    "python -m recsys export --ckpt artifacts/runs/nbpo/checkpoints/best-epoch=XX.ckpt --out artifacts/bundles/nbpo "
    "[--index flat|hnsw|ivf] [--hnsw-m 32 --ef-construction 200 --ef-search 128] [--nlist N --nprobe 16] "
    "[--min-recall 0.9] [--name nbpo] [--version V] [--force]": Run(sub=(
        ("artifacts/bundles/nbpo [--index flat|hnsw|ivf] [--hnsw-m 32 --ef-construction 200 --ef-search 128] "
         "[--nlist N --nprobe 16] [--min-recall 0.9] [--name nbpo] [--version V] [--force]",
         "artifacts/bundles/nbpo_hnsw --index hnsw --hnsw-m 16 --ef-construction 40 --ef-search 64 --min-recall 0.5 "
         "--name nbpo --version V --force"),), needs=("nbpo_run",)),
    "PREFENGINE_ADMIN_TOKEN=long-random-admin-token-0123456789abcdef python -m serving --bundle "
    "artifacts/bundles/nbpo --port 8000": Run(makes="nbpo_service", needs=("nbpo_bundle",)),
    "python -m serving --bundle artifacts/bundles/nbpo [--host 127.0.0.1 --port 8000 --workers 1] "
    "[--feedback-db artifacts/feedback/events.sqlite] [--config configs/serving/default.yaml]": Run(sub=(
        ("[--host 127.0.0.1 --port 8000 --workers 1] [--feedback-db artifacts/feedback/events.sqlite] "
         "[--config configs/serving/default.yaml]",
         "--host 127.0.0.1 --port 8000 --workers 1 --feedback-db artifacts/feedback/other.sqlite "
         "--config configs/serving/default.yaml"),), needs=("nbpo_bundle",)),
    "PREFENGINE_ADMIN_TOKEN=... python -m serving --bundle ...": Run(sub=(
        ("PREFENGINE_ADMIN_TOKEN=...", "PREFENGINE_ADMIN_TOKEN=another-long-admin-token-0123456789abcdef"),
        ("--bundle ...", "--bundle artifacts/bundles/nbpo --port 8000")), needs=("nbpo_bundle",)),
    "python -m serving export-feedback --db artifacts/feedback/events.sqlite --out artifacts/feedback/events.csv":
        Run(needs=("nbpo_feedback",)),
    "python -m serving export-feedback --db artifacts/feedback/events.sqlite --out artifacts/feedback/events.csv "
    "[--target implicit|rating] [--positive-rating 4] [--drop-clients-over N] [--drop-users-over N]": Run(sub=(
        ("[--target implicit|rating] [--positive-rating 4] [--drop-clients-over N] [--drop-users-over N]",
         "--target rating --positive-rating 4 --drop-clients-over 100 --drop-users-over 50"),),
        needs=("nbpo_feedback",)),
    "python -m serving export-feedback --db artifacts/feedback/events.sqlite --out artifacts/feedback/events.csv "
    "--drop-clients-over 1000 --drop-users-over 200": Run(needs=("nbpo_feedback",)),
    # a service with every hardening flag: a second port, checked by /readyz and stopped
    "python -m serving --bundle artifacts/bundles/nbpo --bundle-root artifacts/bundles --no-docs "
    "--header-timeout-s 10 --body-timeout-s 10 --feedback-rate-per-s 100 --feedback-unknown-items reject": Run(
        "--port 8001 --feedback-db artifacts/feedback/hardened.sqlite", makes="hardened_service",
        needs=("nbpo_bundle",)),
    # personality
    "python -m recsys compare -c configs/recsys/compare_personality.yaml --out artifacts/compare/personality":
        Run(COMPARE_PERSONALITY_TINY),
    "python -m recsys.experiments.compare_personality -c configs/recsys/compare_personality.yaml "
    "--out artifacts/compare/personality": Run(COMPARE_PERSONALITY_TINY),
    "python -m recsys compare -c configs/recsys/compare_traits_sweep.yaml --out artifacts/compare/traits_sweep":
        Run(TRAITS_SWEEP_TINY),
    "python -m recsys compare -c configs/recsys/compare_traits_sweep.yaml --out artifacts/compare/traits_sweep "
    "--data.world_users 1000 --data.world_items 500 --trainer.max_epochs 6": Run(TRAITS_SWEEP_TINY),
    "python -m recsys fit -c configs/recsys/personality_ads.yaml --data.init_args.path /data/ADS16": Run(
        "--trainer.max_epochs 1 --trainer.enable_progress_bar false", sub=(("/data/ADS16", "ADS16"),),
        makes="personality_ads_run", needs=("ads16",)),
    "python -m recsys export --ckpt artifacts/runs/personality_ads/checkpoints/best-epoch=4.ckpt "
    "--out artifacts/bundles/personality_ads": Run(needs=("personality_ads_run",)),
    "python -m recsys fit -c configs/recsys/personality.yaml --data.init_args.world_preset toy "
    "--data.init_args.world_tastes true --trainer.max_epochs 3 "
    "--trainer.default_root_dir artifacts/runs/personality_toy": Run(
        "--trainer.max_epochs 2 --trainer.enable_progress_bar false", makes="personality_toy_run"),
    "python -m recsys export --ckpt \"artifacts/runs/personality_toy/checkpoints/best-epoch=2.ckpt\" "
    "--out artifacts/bundles/personality_toy": Run(makes="personality_toy_bundle", needs=("personality_toy_run",)),
    "python -m serving --bundle artifacts/bundles/personality_toy --port 8734": Run(
        makes="personality_service", needs=("personality_toy_bundle",)),
    # preference discerning
    "python -m recsys discern -c configs/recsys/mender.yaml --out artifacts/discern/world": Run(
        DISCERN_TINY, makes="mender_run"),
    "python -m recsys export --ckpt artifacts/discern/world/mender/best.ckpt --out artifacts/bundles/mender_world":
        Run(makes="mender_bundle", needs=("mender_run",)),
    "python -m serving --bundle artifacts/bundles/mender_world --port 8733": Run(
        makes="mender_service", needs=("mender_bundle",)),
    "python -m recsys discern -c configs/recsys/mender_dpo.yaml --out artifacts/discern/dpo": Run(
        f"{DISCERN_TINY} --dpo.max_epochs 1", makes="mender_dpo_run"),
    "python -m recsys export --ckpt artifacts/discern/dpo/mender-both/best.ckpt --out artifacts/bundles/mender_both":
        Run(needs=("mender_dpo_run",)),
    # rewards from preferences
    "python -m agents fit -c configs/agents/reward_regret.yaml": Run(REWARD_TINY),
    "python -m agents fit -c configs/agents/reward_partial_return.yaml": Run(REWARD_TINY),
    "python -m agents experiment regret-vs-return --mdps 30 --prefs 300,1000,3000,10000 --seeds 0,1,2 "
    "--out artifacts/experiments/regret-vs-return": Run(REGRET_TINY + " --seeds 0,1"),
    # agents
    "python -m agents fit -c configs/agents/ppo.yaml": Run(PPO_TINY, makes="ppo_base"),
    "python -m agents fit -c configs/agents/rlhg.yaml": Run(RLHG_TINY, needs=("ppo_base",)),
    "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 3 --out artifacts/rlhg_collab": Run(
        RLHG_EXPERIMENT_TINY),
    "python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 3 --out artifacts/rlhg_recsim": Run(
        RLHG_EXPERIMENT_TINY),
    "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 5 --out artifacts/rlhg_collab": Run(
        RLHG_EXPERIMENT_TINY, makes="rlhg_collab"),
    "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 5 --beta-schedule none --reuse-base "
    "artifacts/rlhg_collab --out artifacts/rlhg_collab_none": Run(RLHG_EXPERIMENT_TINY, needs=("rlhg_collab",)),
    "python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 5 --out artifacts/rlhg_recsim": Run(
        RLHG_EXPERIMENT_TINY, makes="rlhg_recsim"),
    "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 5 --beta-schedule matched "
    "--out artifacts/rlhg_collab_matched": Run(RLHG_EXPERIMENT_TINY, makes="rlhg_collab_matched"),
    "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 5 --beta-schedule none --reuse-base "
    "artifacts/rlhg_collab_matched --out artifacts/rlhg_collab_none": Run(
        RLHG_EXPERIMENT_TINY, needs=("rlhg_collab_matched",)),
    "python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 5 --beta-schedule matched "
    "--out artifacts/rlhg_recsim_matched": Run(RLHG_EXPERIMENT_TINY, makes="rlhg_recsim_matched"),
    "python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 5 --beta-schedule none --reuse-base "
    "artifacts/rlhg_recsim_matched --out artifacts/rlhg_recsim_none": Run(
        RLHG_EXPERIMENT_TINY, needs=("rlhg_recsim_matched",)),
    "python -m agents experiment human-likelihood --data ../shared/data/delivery-human-prefs "
    "--out artifacts/experiments/human-likelihood": Run(HUMAN_TINY, needs=("shared_data",)),
    "python -m agents experiment regret-vs-return --mdps 100 --no-delivery --prefs 300,1000,3000,10000 --seed 0 "
    "--out artifacts/experiments/regret-vs-return-100": Run("--mdps 2 --prefs 30,100 --steps 50 --workers 1"),
    "python -m agents experiment regret-vs-return --mdps 100 --no-delivery --prefs 300,1000,3000,10000 --seeds 0,1,2 "
    "--workers 2 --out artifacts/findings/regret_vs_return_100_seeds": Run("--mdps 2 --prefs 30,100 --steps 50 --workers 1"),
    # pluralistic reward learning
    "python -m agents experiment pluralistic --seeds 5 --teacher partial_return --steps 200 --restarts 1 "
    "--out docs/results/pluralistic_agents.json": Run(PLURALISTIC_TINY),
    "python -m agents experiment pluralistic --seeds 3 --teacher regret --seen 50 --unseen 50 --steps 150 "
    "--restarts 1 --n-policies 50 --populations pure,control --workers 2 "
    "--out docs/results/pluralistic_agents_regret.json": Run(PLURALISTIC_TINY),
    "python -m agents fit -c configs/agents/pluralistic.yaml": Run(PLURALISTIC_FIT_TINY),
    "python -m agents simulate --env prefengine/RecSim-v0 --policy "
    "artifacts/rlhg_recsim/checkpoints/rlhg_alpha1_seed0.ckpt --episodes 200 --seed 0 --out artifacts/sim/recsim_rlhg":
        Run(SIMULATE_TINY, needs=("rlhg_recsim",)),
    "python -m agents simulate --env prefengine/RecSim-v0 --policy "
    "artifacts/rlhg_recsim/checkpoints/rlhg_alpha1_seed0.ckpt --episodes 200 --seed 0 --vector-env async "
    "--out artifacts/sim/recsim_rlhg_async": Run(SIMULATE_TINY, needs=("rlhg_recsim",)),
    "python -m agents simulate --env prefengine/RecSim-v0 --policy artifacts/bundles/bpr_toy --episodes 300 --seed 0 "
    "--out artifacts/sim/recsim_bpr": Run(SIMULATE_TINY, needs=("bpr_toy_bundle",)),
    "python -m agents simulate --policy artifacts/rlhg_collab/checkpoints/rlhg_alpha0.5_seed0.ckpt --episodes 200 "
    "--seed 7 --out artifacts/sim/collab_rlhg": Run(SIMULATE_TINY, needs=("rlhg_collab",)),
    "python -m agents simulate --env prefengine/RecSim-v0 --policy BUNDLE_DIR_OR_RECSYS_CKPT --episodes 200 "
    "--out artifacts/sim/recsim": Run(SIMULATE_TINY, sub=(("BUNDLE_DIR_OR_RECSYS_CKPT", "artifacts/bundles/bpr_toy"),),
                                      needs=("bpr_toy_bundle",)),
    "python -m recsys fit -c configs/recsys/bpr.yaml --data.world_preset toy --data.false_positive_rate 0.1 "
    "--trainer.default_root_dir artifacts/runs/bpr_toy --trainer.max_epochs 40": Run(
        "--trainer.max_epochs 2 --trainer.check_val_every_n_epoch 1 --trainer.enable_progress_bar false",
        makes="bpr_toy_run"),
    "python -m recsys export --ckpt \"artifacts/runs/bpr_toy/checkpoints/best-epoch=11.ckpt\" "
    "--out artifacts/bundles/bpr_toy": Run(makes="bpr_toy_bundle", needs=("bpr_toy_run",)),
}

# `curl` lines: the documented port -> the service (a `makes` above) they query.
SERVICES = {"8000": "nbpo_service", "8734": "personality_service", "8733": "mender_service"}
