"""Lightning callbacks specific to deblurring (image grids); generic ones come from Lightning."""
