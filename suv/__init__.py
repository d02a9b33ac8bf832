"""SUV: the Open-Sora Plan v1.5 model layer (denoiser, WF-VAE, sampler, trainer) on top of skiparse."""
