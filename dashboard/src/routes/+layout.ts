// Every route is prerendered as a client-rendered shell: the session lives in the browser (localStorage),
// so there is nothing to render on the server. The Cairn server falls back to 200.html for other paths.
export const prerender = true;
export const ssr = false;
