"""The model side: everything that touches torch and transformers.

Hub and folder loading, the model-input contract, the loaded model with its
precision copy, the forward pass, packed rows, and the saved folder.
"""
