"""Detector worker: finds signs with YOLO and names them with a crop classifier."""
