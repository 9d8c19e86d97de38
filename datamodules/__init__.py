"""Data: GOPRO-layout paired datasets, synthetic motion blur, Lightning DataModules."""
