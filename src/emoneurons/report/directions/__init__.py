"""The report's emotion-directions feature: figure.py (separation by layer, the six class means'
PCA, the neurons' write alignment against control draws) and section.py (its text and table),
both drawn from reports/metrics/directions.json (io/directions_file.py)."""
