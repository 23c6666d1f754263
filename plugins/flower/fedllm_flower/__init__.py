"""fedllm on Flower: our engine drives a Flower Grid; our plugins run unchanged in ClientApps."""
