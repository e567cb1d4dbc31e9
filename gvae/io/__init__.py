"""Reading and writing, apart from the maths: atomic files, MNIST and user data sets, PNG images, the
command line's parser."""
