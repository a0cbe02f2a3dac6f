"""Plots and the dashboard. Data steps (:mod:`nas_attn.viz.data`) are pure and plotly-free;
drawing steps (:mod:`nas_attn.viz.plots`) return plotly figures and never show or save them;
:mod:`nas_attn.viz.dashboard` assembles one self-contained HTML page and
:mod:`nas_attn.viz.serve` serves it while a search runs. Import the submodule you need
(plotly loads only there)."""
