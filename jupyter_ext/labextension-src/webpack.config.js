// Merged into JupyterLab's own build (package.json, jupyterlab.webpackConfig). Module ids by name,
// not by a hash of their identifiers: the container entry's identifier holds absolute paths, so
// hashed ids made the prebuilt, tracked ../labextension differ in every checkout that rebuilt it.
module.exports = {
  optimization: { moduleIds: 'named' }
};
