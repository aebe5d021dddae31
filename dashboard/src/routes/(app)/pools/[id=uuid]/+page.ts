// A page per id: not prerendered; the server answers 200.html for it and the client renders it.
export const prerender = false;
