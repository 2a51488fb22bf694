"""One module a page: its routes, its calls to the admin API, its template."""
