"""The console scripts, one module each (``main(argv) -> exit code``); argparse lives only here.

``suv-generate`` (``generate``), ``suv-vae`` (``vae``), ``suv-convert`` (``convert``), ``suv-train`` (``train``),
``suv-cache`` (``cache``).
"""
