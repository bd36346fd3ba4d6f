// Starts Swagger UI on /docs. A file rather than an inline script, so the page's Content-Security-Policy can
// forbid inline code; the schema's address comes from the page (it carries the gateway prefix, KS_ROOT_PATH).
(function () {
  "use strict";
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    displayRequestDuration: true,
    filter: true,
    // The key stays in this page only; the schema is never sent to the public validator.
    persistAuthorization: false,
    validatorUrl: null,
  });
})();
