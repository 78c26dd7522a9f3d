"""``python -m fer_pipeline.runner``: the pipeline without Kedro (``runner.cli``)."""

from fer_pipeline.runner.cli import main

if __name__ == "__main__":
    main()
