"""Cascade cases service: runs collection cases through reminder, notice, negotiation and
litigation.
"""
