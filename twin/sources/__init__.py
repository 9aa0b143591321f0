"""Sources that bring an author's writing in as raw documents."""
