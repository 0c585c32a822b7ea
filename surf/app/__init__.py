"""The top layer, the only one that talks to the user: the command line (``cli``), every registry a config or a
command can name (``registry``), the run / re-evaluate pipeline (``runner``) and sweeps of runs (``sweep``)."""
