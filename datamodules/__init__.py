"""Lightning datamodules: samples {id, source, image, prompt} from folders (and, later, COCO and WebDataset)."""
