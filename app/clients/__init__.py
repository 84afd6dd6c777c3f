"""One module per external service; each translates its library's failures into app.errors."""
