"""The demo district: synthetic people and apps, served by the emulators and scanned for real."""
