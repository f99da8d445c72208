"""Looking inside a run: the attention recorder, probes that sample and measure attention, and the plots."""
