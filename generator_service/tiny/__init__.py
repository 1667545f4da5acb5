"""The tiny twins: each family's real classes with tiny, seeded random weights, built offline.

One module per family (``stable_diffusion``, ``stable_diffusion_xl``, ``stable_diffusion_3``,
``flux``, ``omnigen``, ``world``), each with a ``build_pipeline`` that the family's ``load`` calls
(importing the module lazily) only for ``source = "tiny"`` specs; shared blocks in ``components``
and ``tokenizers``. Same seeds, same images, in every process.
"""
