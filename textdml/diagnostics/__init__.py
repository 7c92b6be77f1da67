"""Know your run: preflight checks, embedding health while training, and an HTML report."""
