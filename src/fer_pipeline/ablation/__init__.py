"""The class-imbalance ablation: every strategy of conf/ablation.yml x every seed, resumable.

``plan`` (the config, each run's parameters and fingerprint), ``records`` (one JSON line per
finished run), ``run`` (the stage functions: ``core.training.job.train_resnet``,
``core.evaluation.split.evaluate_split``), ``report`` (mean ± std
per strategy, the best by PublicTest macro-F1, MLflow) and ``cli`` (``benchmarks/ablation.py``).
"""
