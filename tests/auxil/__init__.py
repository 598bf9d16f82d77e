"""Test helpers: loopback fakes and directory builders."""
