"""Local emulators of the Google Admin SDK and Microsoft Graph, for tests and the demo."""
