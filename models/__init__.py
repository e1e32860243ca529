"""Face detection models: our network (`models.facedet`) and its runtimes (`models.runtimes`)."""
