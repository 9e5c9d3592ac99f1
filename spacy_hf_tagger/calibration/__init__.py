"""Calibrated scores: temperature scaling of the probabilities scores are read from.

`temperature` applies the `temperature` setting (numpy only: the component
imports it); `fitting` fits it on a dev set's tokens or entities (scipy);
`reliability` measures calibration (entity-level ECE, its bins);
`diagram` draws the reliability diagram (matplotlib); `collect` runs a
pipeline over gold docs for what the fit needs. The `calibrate` command's
glue is `jobs.calibrate`. scipy and matplotlib come with the `calibrate`
extra: nothing here imports them until a fit or a diagram asks.
"""
