"""The web client a person uses: a page and its ES modules, served by the gateway (`routes`)."""
