"""Paper results tables (`lesion-lightning reproduce`): the YAML specs in experiments/tables/ (`spec`), their
scoring and protocol conventions (`scoring`), job planning (`plan`), the runner and results store (`runner`),
parallel workers and job locks (`parallel`) and aggregation into md/csv/tex/png (`aggregate`). The YAML
folder `experiments/` holds training configs; this package runs tables."""
