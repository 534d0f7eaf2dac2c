# Third-party browser code, vendored under the app's static files (no CDN at run time).
# `make vendor-charts` fetches TradingView's lightweight-charts at the pinned version from the npm
# registry (npm pack), and copies its standalone production build and its licence.
LWC_VERSION := 5.2.1
VENDOR_DIR := ticker/static/ticker/vendor

.PHONY: vendor-charts
vendor-charts:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm pack --silent lightweight-charts@$(LWC_VERSION) >/dev/null && tar xzf lightweight-charts-$(LWC_VERSION).tgz) && \
	cp "$$tmp/package/dist/lightweight-charts.standalone.production.js" $(VENDOR_DIR)/lightweight-charts.standalone.production.js && \
	cp "$$tmp/package/LICENSE" $(VENDOR_DIR)/lightweight-charts.LICENSE && \
	echo "vendored lightweight-charts $(LWC_VERSION) into $(VENDOR_DIR)"
