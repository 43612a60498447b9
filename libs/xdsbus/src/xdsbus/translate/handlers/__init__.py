"""One handler per family of kinds: each owns its index, folds its objects into the route model and says
what it touched; `translate.translator` dispatches events to them through a kind → handler table."""
