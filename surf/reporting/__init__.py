"""What a person reads: the tables printed at the end of a run, the PNG plots of a run directory (and the inpainting
image grid), the sweep report
(``surf report``: one section per paper figure, with the paper's numbers beside ours) and the stress bench's tables."""
