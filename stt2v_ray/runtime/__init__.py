"""The Ray executor. The only package that imports Ray."""
